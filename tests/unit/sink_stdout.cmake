# sink-stdout against the fake host (fd 1 swapped for a file, pipe or /dev/full).
aero_unit_test(test_sink_stdout SOURCES ${CMAKE_SOURCE_DIR}/tests/fake_host.c ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_CURRENT_LIST_DIR}/sink_test.c ${CMAKE_SOURCE_DIR}/core/envelope_json.c
  LIBS PkgConfig::INIH)
add_dependencies(test_sink_stdout sink-stdout)
