# SipHash-2-4 (core/siphash.c) against the paper's test vector.
aero_unit_test(test_siphash SOURCES ${CMAKE_SOURCE_DIR}/core/siphash.c)
