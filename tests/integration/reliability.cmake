# Limits, garbage on the port, faults (kill -9, SIGTERM under load, stuck
# sinks) and the valgrind run: black-box tests of the real relay binary.
# tcp_proxy.c is a loopback proxy that can freeze or cut connections.
set(AERO_RELIABILITY_TESTS test_e2e_limits test_e2e_garbage test_e2e_faults test_e2e_attacks
  test_e2e_reload)
if(NOT AERO_SANITIZE) # valgrind and ASan cannot run together
  list(APPEND AERO_RELIABILITY_TESTS test_e2e_valgrind)
endif()
set(AERO_RELIABILITY_SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_SOURCE_DIR}/tests/test_server.c
  ${CMAKE_CURRENT_LIST_DIR}/tcp_proxy.c ${CMAKE_CURRENT_LIST_DIR}/steady_agent.c
  ${CMAKE_CURRENT_LIST_DIR}/h2_raw.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c)
foreach(t ${AERO_RELIABILITY_TESTS})
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${t}.c)
    aero_unit_test(${t} SOURCES ${AERO_RELIABILITY_SOURCES} LIBS relay_client)
    target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    add_dependencies(${t} aeroarc-relay test-plugins sink-file sink-stdout route-none)
  endif()
endforeach()

# attack_soak: each attack for a minute (tools/attack-soak.sh), built here
# and never run by ctest. OpenSSL for its edge mode (TLS to HAProxy,
# edge_proxy.c); HAProxy itself is only needed when that mode runs.
find_package(OpenSSL)
if(OpenSSL_FOUND)
  aero_unit_test(attack_soak NO_CTEST SOURCES ${AERO_RELIABILITY_SOURCES}
    ${CMAKE_CURRENT_LIST_DIR}/edge_proxy.c LIBS relay_client OpenSSL::SSL OpenSSL::Crypto)
  target_include_directories(attack_soak PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  add_dependencies(attack_soak aeroarc-relay test-plugins sink-file sink-stdout route-none)
else()
  message(STATUS "OpenSSL not found: attack_soak (tools/attack-soak.sh) not built")
endif()
