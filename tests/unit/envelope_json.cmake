# The envelope JSON encoder on its own (python3's json module validates output).
aero_unit_test(test_envelope_json SOURCES ${CMAKE_SOURCE_DIR}/core/envelope_json.c)
