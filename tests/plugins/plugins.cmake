# Plugins that exist only to test the loader and the pipeline.
aero_test_plugin(test-bad-abi ${CMAKE_CURRENT_LIST_DIR}/bad_abi.c)
aero_test_plugin(test-no-entry ${CMAKE_CURRENT_LIST_DIR}/no_entry.c)
aero_test_plugin(test-old-minor ${CMAKE_CURRENT_LIST_DIR}/old_minor.c)
aero_test_plugin(test-new-minor ${CMAKE_CURRENT_LIST_DIR}/new_minor.c)
aero_test_plugin(test-sink-control ${CMAKE_CURRENT_LIST_DIR}/sink_control.c)
aero_test_plugin(test-wrong-name ${CMAKE_CURRENT_LIST_DIR}/wrong_name.c)
add_custom_target(test-plugins DEPENDS test-bad-abi test-no-entry test-old-minor test-new-minor test-sink-control
  test-wrong-name)
