# route-redis's bookkeeping (route_state.c) and value/address helpers
# (redis_link.c), compiled straight from the plugin's sources: no Redis.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
aero_unit_test(test_route_state
  SOURCES ${CMAKE_SOURCE_DIR}/plugins/route-redis/route_state.c
          ${CMAKE_SOURCE_DIR}/plugins/route-redis/redis_link.c
  LIBS PkgConfig::HIREDIS)
target_include_directories(test_route_state PRIVATE ${CMAKE_SOURCE_DIR}/plugins/route-redis)
