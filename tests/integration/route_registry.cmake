# route-registry against a small AeroRegistry of the tests' own
# (registry_server.py: Debian's python3-grpcio, python3-protobuf and
# protobuf-compiler) over real gRPC, and the real relay binary; a real
# redis-server for route-redis beside it; aeroarc-bench as a child.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
aero_unit_test(test_route_registry
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/redis_server.c
          ${CMAKE_CURRENT_LIST_DIR}/http_client.c ${CMAKE_CURRENT_LIST_DIR}/steady_agent.c
          ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::HIREDIS)
target_include_directories(test_route_registry PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_route_registry aeroarc-relay aeroarc-bench route-registry route-redis
  route-none test-plugins sink-file sink-stdout)
