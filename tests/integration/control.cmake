# RelayControl, /metrics (checked by promtool), /healthz, /readyz, logs and
# SIGHUP against the real relay binary.
aero_unit_test(test_e2e_control SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_SOURCE_DIR}/tests/test_server.c
  ${CMAKE_CURRENT_LIST_DIR}/http_client.c LIBS relay_client)
target_include_directories(test_e2e_control PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_e2e_control aeroarc-relay test-plugins sink-file sink-stdout route-none)
