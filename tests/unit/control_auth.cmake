# Who may command agents (core/control_auth.c): certificates made with the
# openssl command, the call layer stubbed.
if(NOT TARGET PkgConfig::LIBCRYPTO)
  pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
endif()
aero_unit_test(test_control_auth SOURCES ${CMAKE_SOURCE_DIR}/core/control_auth.c
  LIBS PkgConfig::LIBCRYPTO)
