# The gate that parks the gRPC workers the load does not need
# (core/worker_gate.c), with real threads.
aero_unit_test(test_worker_gate SOURCES ${CMAKE_SOURCE_DIR}/core/worker_gate.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c)
target_include_directories(test_worker_gate PRIVATE ${CMAKE_SOURCE_DIR}/plugins/common)
