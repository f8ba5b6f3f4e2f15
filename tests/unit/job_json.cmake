# The envelope encoding shared by a job's sinks (core/job_json.c).
aero_unit_test(test_job_json SOURCES ${CMAKE_SOURCE_DIR}/core/job_json.c
  ${CMAKE_SOURCE_DIR}/core/envelope_json.c)
