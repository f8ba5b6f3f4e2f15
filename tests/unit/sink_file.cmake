# sink-file against the fake host. ENABLE_EXPORTS lets the dlopened plugin
# bind to the test's fdatasync (counting and failure injection).
aero_unit_test(test_sink_file SOURCES ${CMAKE_SOURCE_DIR}/tests/fake_host.c ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_CURRENT_LIST_DIR}/sink_test.c ${CMAKE_SOURCE_DIR}/core/envelope_json.c
  LIBS PkgConfig::INIH)
add_dependencies(test_sink_file sink-file)
set_target_properties(test_sink_file PROPERTIES ENABLE_EXPORTS ON)
