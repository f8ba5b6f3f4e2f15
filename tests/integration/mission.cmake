# Mission upload (SPEC.md section 14): DeployMission
# through the real relay over mTLS, with a simulated upstream agent. The RTL
# plan is digested with core/command_digest.c (pinned to the SPEC's
# golden vectors by test_command_digest).
if(NOT TARGET PkgConfig::LIBCRYPTO)
  pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
endif()
aero_unit_test(test_e2e_mission SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_CURRENT_LIST_DIR}/control_fixture.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
  ${CMAKE_SOURCE_DIR}/core/command_digest.c ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client aeroproto PkgConfig::LIBCRYPTO Threads::Threads)
target_include_directories(test_e2e_mission PRIVATE ${CMAKE_CURRENT_LIST_DIR}
  ${CMAKE_SOURCE_DIR}/core)
add_dependencies(test_e2e_mission aeroarc-relay test-plugins sink-file route-none)
