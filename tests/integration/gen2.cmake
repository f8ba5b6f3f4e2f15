# Generation 2 of TelemetryStream (SPEC.md section 9) against the real relay
# binary: the C client (relay_client) and an independent Python grpcio agent
# (gen2_client.py, needs python3-grpcio, python3-protobuf, protobuf-compiler).
aero_unit_test(test_e2e_gen2 SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_SOURCE_DIR}/tests/test_server.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
  LIBS relay_client)
target_include_directories(test_e2e_gen2 PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_e2e_gen2 aeroarc-relay aeroarc-client aeroarc-bench test-plugins sink-file sink-stdout route-none)

# Step 9: a full sink queue holds generation-2 acks (gen2_hold_s).
aero_unit_test(test_e2e_gen2_hold SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
  ${CMAKE_SOURCE_DIR}/tests/test_server.c ${CMAKE_CURRENT_LIST_DIR}/http_client.c
  LIBS relay_client)
target_include_directories(test_e2e_gen2_hold PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_e2e_gen2_hold aeroarc-relay test-plugins route-none)
