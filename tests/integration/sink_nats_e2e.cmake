# sink-nats end to end: the real relay, a real nats-server (started by the
# test via tests/nats_server.c), agents on relay_client, a libnats consumer.
if(NOT TARGET PkgConfig::NATS)
  pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
endif()
aero_unit_test(test_sink_nats_e2e
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
          ${CMAKE_SOURCE_DIR}/tests/nats_server.c
          ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::NATS)
target_include_directories(test_sink_nats_e2e PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_sink_nats_e2e aeroarc-relay sink-nats route-none test-plugins)
