# sink-influxdb3 through the real relay binary, with influx3_server.py (a
# stand-in for InfluxDB 3's write API: InfluxDB 3 is not packaged for Debian).
aero_unit_test(test_sink_influxdb3_e2e
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
          ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client)
target_include_directories(test_sink_influxdb3_e2e PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_sink_influxdb3_e2e aeroarc-relay sink-influxdb3 sink-file test-plugins
  sink-stdout route-none)
