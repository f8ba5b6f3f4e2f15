# The periodic summary line (core/summary.c): its text for given samples.
aero_unit_test(test_summary SOURCES ${CMAKE_SOURCE_DIR}/core/summary.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/log.c)
