# sink-influxdb against the fake host and a real influxd started by the test
# (tests/integration/influx_server.c), read back with /query.
if(NOT TARGET PkgConfig::TEST_CURL)
  pkg_check_modules(TEST_CURL REQUIRED IMPORTED_TARGET libcurl)
endif()
aero_unit_test(test_sink_influxdb SOURCES ${CMAKE_SOURCE_DIR}/tests/fake_host.c ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_CURRENT_LIST_DIR}/sink_test.c
  ${CMAKE_SOURCE_DIR}/core/envelope_json.c ${CMAKE_SOURCE_DIR}/tests/integration/harness.c
  ${CMAKE_SOURCE_DIR}/tests/integration/influx_server.c ${CMAKE_SOURCE_DIR}/tests/test_server.c
  ${CMAKE_SOURCE_DIR}/plugins/sink-influxdb/influx_line.c ${CMAKE_SOURCE_DIR}/plugins/common/line_proto.c
  LIBS relay_client PkgConfig::TEST_CURL PkgConfig::INIH)
# influx_line.c is compiled in as well, so exact lines can be compared.
target_include_directories(test_sink_influxdb PRIVATE ${CMAKE_SOURCE_DIR}/tests/integration
  ${CMAKE_SOURCE_DIR}/plugins/sink-influxdb ${CMAKE_SOURCE_DIR}/plugins/common)
add_dependencies(test_sink_influxdb sink-influxdb)
