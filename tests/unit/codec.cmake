# The wire codec and the session table (core/frame_codec.c, core/session_table.c).
aero_unit_test(test_frame_codec SOURCES ${CMAKE_SOURCE_DIR}/core/frame_codec.c
  ${CMAKE_SOURCE_DIR}/core/siphash.c LIBS aeroproto)
aero_unit_test(test_session_table SOURCES ${CMAKE_SOURCE_DIR}/core/session_table.c
  ${CMAKE_SOURCE_DIR}/core/siphash.c ${CMAKE_SOURCE_DIR}/core/random_bytes.c)
