# sink-influxdb through the real relay binary, with a real influxd.
if(NOT TARGET PkgConfig::TEST_CURL)
  pkg_check_modules(TEST_CURL REQUIRED IMPORTED_TARGET libcurl)
endif()
aero_unit_test(test_sink_influxdb_e2e
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/influx_server.c
          ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::TEST_CURL)
target_include_directories(test_sink_influxdb_e2e PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_sink_influxdb_e2e aeroarc-relay sink-influxdb test-plugins sink-file
  sink-stdout route-none)
