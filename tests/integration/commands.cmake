# Commands to the aircraft (SPEC.md section 10) through the real relay over
# real TLS, with certificates the test makes with openssl.
aero_unit_test(test_e2e_commands SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_CURRENT_LIST_DIR}/control_fixture.c
  ${CMAKE_CURRENT_LIST_DIR}/http_client.c   ${CMAKE_SOURCE_DIR}/tests/test_server.c LIBS relay_client Threads::Threads)
target_include_directories(test_e2e_commands PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_e2e_commands aeroarc-relay aeroarc-client test-plugins sink-file route-none)
