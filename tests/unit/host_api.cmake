# The aero_host behind every plugin instance (core/host_api.c): typed config
# reads and config_error (ABI 1.1) over core/config.c; the relay view (1.2).
aero_unit_test(test_host_api SOURCES ${CMAKE_SOURCE_DIR}/core/host_api.c
  ${CMAKE_SOURCE_DIR}/core/config.c ${CMAKE_SOURCE_DIR}/core/log.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/job_json.c
  ${CMAKE_SOURCE_DIR}/core/envelope_json.c ${CMAKE_SOURCE_DIR}/core/readiness.c
  ${CMAKE_SOURCE_DIR}/core/session_table.c ${CMAKE_SOURCE_DIR}/core/siphash.c
  ${CMAKE_SOURCE_DIR}/core/random_bytes.c LIBS PkgConfig::INIH)
