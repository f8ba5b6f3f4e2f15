# Plugins that exist only to test the loader and the pipeline.
aero_test_plugin(test-bad-abi ${CMAKE_CURRENT_LIST_DIR}/bad_abi.c)
aero_test_plugin(test-no-entry ${CMAKE_CURRENT_LIST_DIR}/no_entry.c)
aero_test_plugin(test-old-minor ${CMAKE_CURRENT_LIST_DIR}/old_minor.c)
aero_test_plugin(test-new-minor ${CMAKE_CURRENT_LIST_DIR}/new_minor.c)
aero_test_plugin(test-sink-control ${CMAKE_CURRENT_LIST_DIR}/sink_control.c)
aero_test_plugin(test-wrong-name ${CMAKE_CURRENT_LIST_DIR}/wrong_name.c)
# A plugin whose library the loader cannot find: built in a directory of its
# own, and the plugin without rpath, so only the test knows where it is.
add_library(aero-test-gone SHARED ${CMAKE_CURRENT_LIST_DIR}/gone_lib.c)
set_target_properties(aero-test-gone PROPERTIES
  LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/test-gone-lib")
aero_test_plugin(test-needs-lib ${CMAKE_CURRENT_LIST_DIR}/needs_lib.c)
target_link_libraries(test-needs-lib PRIVATE aero-test-gone)
set_target_properties(test-needs-lib PROPERTIES SKIP_BUILD_RPATH TRUE)
add_custom_target(test-plugins DEPENDS test-bad-abi test-no-entry test-old-minor test-new-minor test-sink-control
  test-wrong-name test-needs-lib)
