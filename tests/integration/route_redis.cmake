# route-redis against a real redis-server (started by the tests on free
# loopback ports) and the real relay binary; aeroarc-bench runs as a child.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
aero_unit_test(test_route_redis
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c ${CMAKE_CURRENT_LIST_DIR}/redis_server.c
          ${CMAKE_CURRENT_LIST_DIR}/http_client.c ${CMAKE_SOURCE_DIR}/tests/test_server.c
  LIBS relay_client PkgConfig::HIREDIS)
target_include_directories(test_route_redis PRIVATE ${CMAKE_CURRENT_LIST_DIR})
add_dependencies(test_route_redis aeroarc-relay aeroarc-bench route-redis test-plugins sink-file
  sink-stdout route-none)
