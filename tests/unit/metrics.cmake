# The metric registry and the HTTP endpoints on their own (core/metrics.c,
# core/http_server.c); promtool (Debian package prometheus) validates output.
if(NOT TARGET PkgConfig::MHD)
  pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
endif()
set(AERO_HTTP_CLIENT ${CMAKE_SOURCE_DIR}/tests/integration/http_client.c)
aero_unit_test(test_metrics SOURCES ${CMAKE_SOURCE_DIR}/core/metrics.c
  ${CMAKE_SOURCE_DIR}/core/process_metrics.c ${AERO_HTTP_CLIENT})
aero_unit_test(test_http_server SOURCES ${CMAKE_SOURCE_DIR}/core/http_server.c
  ${CMAKE_SOURCE_DIR}/core/readiness.c ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/log.c ${AERO_HTTP_CLIENT}
  LIBS PkgConfig::MHD)
