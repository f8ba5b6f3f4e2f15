# The per-session command table's operation-context state (core/command_table.c)
# with the stream and call layers stubbed.
aero_unit_test(test_command_table SOURCES ${CMAKE_SOURCE_DIR}/core/command_table.c
  ${CMAKE_SOURCE_DIR}/core/metrics.c ${CMAKE_SOURCE_DIR}/core/frame_codec.c
  ${CMAKE_SOURCE_DIR}/core/siphash.c ${CMAKE_SOURCE_DIR}/core/random_bytes.c)
target_include_directories(test_command_table PRIVATE ${CMAKE_SOURCE_DIR}/plugins/common)
