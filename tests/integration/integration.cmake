# Black-box tests: the real aeroarc-relay binary, real plugins, real gRPC.
set(AERO_HARNESS ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_SOURCE_DIR}/tests/test_server.c)
foreach(t test_e2e_stream test_e2e_backpressure test_cli test_e2e_security test_bench_tool)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${t}.c)
    aero_unit_test(${t} SOURCES ${AERO_HARNESS} LIBS relay_client)
    target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    add_dependencies(${t} aeroarc-relay aeroarc-bench test-plugins sink-file sink-stdout route-none)
  endif()
endforeach()
if(TARGET test_bench_tool) # --commands against [control]: the fixture's certificates
  target_sources(test_bench_tool PRIVATE ${CMAKE_CURRENT_LIST_DIR}/control_fixture.c
    ${CMAKE_CURRENT_LIST_DIR}/http_client.c)
endif()
if(TARGET test_e2e_security) # reads /metrics
  target_sources(test_e2e_security PRIVATE ${CMAKE_CURRENT_LIST_DIR}/http_client.c)
endif()
