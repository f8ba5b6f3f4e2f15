# The per-connection call guard (core/conn_guard.c): refusal of busy
# connections and shedding of the heaviest one, on real loopback sockets.
aero_unit_test(test_conn_guard SOURCES ${CMAKE_SOURCE_DIR}/core/conn_guard.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/log.c)
