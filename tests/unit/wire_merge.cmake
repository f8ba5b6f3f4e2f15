# A singular message field sent as several records, merged on the wire
# before protobuf-c reads it (core/wire_merge.c; SPEC 12.7 reading 6).
aero_unit_test(test_wire_merge SOURCES ${CMAKE_SOURCE_DIR}/core/wire_merge.c
  ${CMAKE_SOURCE_DIR}/core/wire_record.c LIBS aeroproto)
