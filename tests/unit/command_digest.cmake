# The canonical command and mission-plan digests of SPEC 12.3 and the mission
# item rules of 14.3 (core/command_digest.c), against the SPEC's vectors.
if(NOT TARGET PkgConfig::LIBCRYPTO)
  pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
endif()
aero_unit_test(test_command_digest SOURCES ${CMAKE_SOURCE_DIR}/core/command_digest.c
  LIBS aeroproto PkgConfig::LIBCRYPTO)
# Source properties are per directory: repeat core/CMakeLists.txt's
# -ffp-contract=off (the altitude round trip must not be fused into an FMA).
set_source_files_properties(${CMAKE_SOURCE_DIR}/core/command_digest.c PROPERTIES
  COMPILE_OPTIONS -ffp-contract=off)
