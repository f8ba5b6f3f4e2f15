# Request bytes made to read under protobuf-c as under Go's protobuf
# (core/wire_prepare.c: merged records, wrong wire types; SPEC 12.7, 14.3).
aero_unit_test(test_wire_prepare SOURCES ${CMAKE_SOURCE_DIR}/core/wire_prepare.c
  ${CMAKE_SOURCE_DIR}/core/wire_record.c LIBS aeroproto)
