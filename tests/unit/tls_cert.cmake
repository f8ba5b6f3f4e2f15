# The TLS certificate's expiry check (core/tls_cert.c); the certificates are
# made in the test with libcrypto.
if(NOT TARGET PkgConfig::LIBCRYPTO)
  pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
endif()
aero_unit_test(test_tls_cert SOURCES ${CMAKE_SOURCE_DIR}/core/tls_cert.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/log.c LIBS PkgConfig::LIBCRYPTO)
