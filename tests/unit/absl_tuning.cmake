# Abseil's deadlock detection switched off (core/absl_tuning.c).
aero_unit_test(test_absl_tuning SOURCES ${CMAKE_SOURCE_DIR}/core/absl_tuning.c LIBS PkgConfig::GRPC)
