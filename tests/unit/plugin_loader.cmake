aero_unit_test(test_plugin_loader SOURCES ${CMAKE_SOURCE_DIR}/core/plugin_loader.c
  LIBS ${LTDL_LIBRARY})
add_dependencies(test_plugin_loader test-plugins sink-file sink-stdout sink-mqtt sink-nats
  sink-influxdb route-none route-redis)
