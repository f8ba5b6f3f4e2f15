# The server-side stream layer (core/rpc_stream.c) through a real rpc_server
# on loopback and a gRPC client the test drives with the C core API.
aero_unit_test(test_rpc_stream LIBS aerocore)
target_include_directories(test_rpc_stream PRIVATE ${CMAKE_SOURCE_DIR}/plugins/common)
