# sink-influxdb3's normalizer table on its own: normalize.c and the shared
# line-protocol escaping compiled in, no relay, no write server.
aero_unit_test(test_influx3_normalize SOURCES
  ${CMAKE_SOURCE_DIR}/plugins/sink-influxdb3/normalize.c ${CMAKE_SOURCE_DIR}/plugins/common/line_proto.c)
target_include_directories(test_influx3_normalize PRIVATE ${CMAKE_SOURCE_DIR}/plugins/sink-influxdb3
  ${CMAKE_SOURCE_DIR}/plugins/common)
# Source properties are per directory: repeat plugins/sink-influxdb3's
# -ffp-contract=off (Go's hypot must not be fused into an FMA).
set_source_files_properties(${CMAKE_SOURCE_DIR}/plugins/sink-influxdb3/normalize.c PROPERTIES
  COMPILE_OPTIONS -ffp-contract=off)
