# Packaging tests. package_build configures, builds and packages the whole
# project a second time with the install prefix the packages use (/usr), in
# the build tree (kept between runs, so a rerun only rebuilds what changed);
# the other tests only read that build:
#   test_install_tree   `cmake --install` into a DESTDIR: exact layout,
#                       config, unit, man page vs --help, pkg-config file,
#                       find_package(aeroarc) from a consumer project
#   test_example_sink   examples/sink-count copied out of the tree, built
#                       from the DESTDIR tree (pkg-config and CMake), loaded
#                       by the installed relay while frames stream in
#   test_plugin_guide   the files docs/plugin-guide.md tells a newcomer to
#                       write, built and loaded the way the guide says
#   test_packages       the .debs: names, exact contents, control fields,
#                       then dpkg -x into a scratch root and run from there
set(AERO_PKG_TEST_DIR "${CMAKE_BINARY_DIR}/package-test")
add_test(NAME package_build
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/build_packages.sh ${CMAKE_SOURCE_DIR} ${AERO_PKG_TEST_DIR}
          ${CMAKE_C_COMPILER})
set_tests_properties(package_build PROPERTIES FIXTURES_SETUP aero_packages TIMEOUT 900)
foreach(t test_install_tree test_example_sink test_plugin_guide test_packages)
  add_test(NAME ${t}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${t}.sh ${CMAKE_SOURCE_DIR} ${AERO_PKG_TEST_DIR})
  set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED aero_packages TIMEOUT 300)
endforeach()
