# sink-mqtt through the real relay binary, with a real mosquitto.
if(NOT TARGET PkgConfig::TEST_MOSQUITTO)
  pkg_check_modules(TEST_MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
endif()
aero_unit_test(test_sink_mqtt_e2e
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/mqtt_server.c
          ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::TEST_MOSQUITTO)
target_include_directories(test_sink_mqtt_e2e PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_sink_mqtt_e2e aeroarc-relay sink-mqtt test-plugins sink-file sink-stdout
  route-none)
