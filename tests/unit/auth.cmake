pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
aero_unit_test(test_auth SOURCES ${CMAKE_SOURCE_DIR}/core/auth.c LIBS PkgConfig::LIBCRYPTO)
