# Limits, garbage on the port, faults (kill -9, SIGTERM under load, stuck
# sinks) and the valgrind run: black-box tests of the real relay binary.
# tcp_proxy.c is a loopback proxy that can freeze or cut connections.
set(AERO_RELIABILITY_TESTS test_e2e_limits test_e2e_garbage test_e2e_faults test_e2e_attacks
  test_e2e_reload)
if(NOT AERO_SANITIZE) # valgrind and ASan cannot run together
  list(APPEND AERO_RELIABILITY_TESTS test_e2e_valgrind)
endif()
# attack_soak: each attack for a minute (tools/attack-soak.sh), built here
# and never run by ctest.
foreach(t ${AERO_RELIABILITY_TESTS} attack_soak)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${t}.c)
    set(no_ctest)
    if(t STREQUAL attack_soak)
      set(no_ctest NO_CTEST)
    endif()
    aero_unit_test(${t} ${no_ctest} SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
      ${CMAKE_SOURCE_DIR}/tests/test_server.c
      ${CMAKE_CURRENT_LIST_DIR}/tcp_proxy.c ${CMAKE_CURRENT_LIST_DIR}/steady_agent.c
      ${CMAKE_CURRENT_LIST_DIR}/h2_raw.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
      LIBS relay_client)
    target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    add_dependencies(${t} aeroarc-relay test-plugins sink-file sink-stdout route-none)
  endif()
endforeach()
