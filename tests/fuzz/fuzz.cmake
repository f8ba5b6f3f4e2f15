# A short libFuzzer run of every target (scripts/fuzz.sh builds them with
# clang into the build tree's fuzz/ and runs each for 20000 inputs). The
# targets carry ASan+UBSan themselves, so the sanitizer build skips this.
if(NOT AERO_SANITIZE)
  add_test(NAME fuzz_short COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz.sh 20000)
  set_tests_properties(fuzz_short PROPERTIES TIMEOUT 600
    ENVIRONMENT "FUZZ_OUT=${CMAKE_BINARY_DIR}/fuzz")
endif()
