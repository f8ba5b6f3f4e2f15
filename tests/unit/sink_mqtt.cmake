# sink-mqtt against the fake host and a real mosquitto started by the test
# (tests/integration/mqtt_server.c), read back by a libmosquitto subscriber.
if(NOT TARGET PkgConfig::TEST_MOSQUITTO)
  pkg_check_modules(TEST_MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
endif()
aero_unit_test(test_sink_mqtt SOURCES ${CMAKE_SOURCE_DIR}/tests/fake_host.c ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_CURRENT_LIST_DIR}/sink_test.c
  ${CMAKE_SOURCE_DIR}/core/envelope_json.c ${CMAKE_SOURCE_DIR}/tests/integration/harness.c
  ${CMAKE_SOURCE_DIR}/tests/integration/mqtt_server.c ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::TEST_MOSQUITTO PkgConfig::INIH)
target_include_directories(test_sink_mqtt PRIVATE ${CMAKE_SOURCE_DIR}/tests/integration)
add_dependencies(test_sink_mqtt sink-mqtt)
