# sink-nats against the fake host and a real nats-server (tests/nats_server.c
# starts it); the test reads the stream back with its own libnats consumer.
if(NOT TARGET PkgConfig::NATS)
  pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
endif()
aero_unit_test(test_sink_nats SOURCES ${CMAKE_SOURCE_DIR}/tests/fake_host.c ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_CURRENT_LIST_DIR}/sink_test.c
  ${CMAKE_SOURCE_DIR}/tests/nats_server.c ${CMAKE_SOURCE_DIR}/tests/test_server.c
  ${CMAKE_SOURCE_DIR}/core/envelope_json.c
  LIBS PkgConfig::NATS PkgConfig::INIH)
add_dependencies(test_sink_nats sink-nats)
