# examples/edge/haproxy.cfg in front of the real relay binary: HAProxy from
# Debian (scripts/deps.sh test) terminates TLS and forwards HTTP/2 to the
# relay; agents of both generations stream through it and the attacks gRPC
# 1.51 cannot survive in-process are run through it (h2_raw over OpenSSL).
find_program(AERO_HAPROXY haproxy PATHS /usr/sbin /sbin)
find_package(OpenSSL)
if(AERO_HAPROXY AND OpenSSL_FOUND)
  aero_unit_test(test_e2e_edge SOURCES ${CMAKE_CURRENT_LIST_DIR}/harness.c
    ${CMAKE_SOURCE_DIR}/tests/test_server.c ${CMAKE_CURRENT_LIST_DIR}/steady_agent.c
    ${CMAKE_CURRENT_LIST_DIR}/h2_raw.c ${CMAKE_CURRENT_LIST_DIR}/edge_proxy.c
    LIBS relay_client OpenSSL::SSL OpenSSL::Crypto)
  target_include_directories(test_e2e_edge PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  add_dependencies(test_e2e_edge aeroarc-relay test-plugins sink-file route-none)
  set_tests_properties(test_e2e_edge PROPERTIES ENVIRONMENT "PATH=/usr/sbin:/sbin:$ENV{PATH}")
else()
  message(STATUS "haproxy or OpenSSL not found: test_e2e_edge not built (scripts/deps.sh test)")
endif()
