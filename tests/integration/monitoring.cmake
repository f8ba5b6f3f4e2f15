# The shipped Prometheus alert rules (promtool check/test rules, a unit test
# per alert) and Grafana dashboard (every query parsed by promtool and
# evaluated over the series a real relay of this build serves).
add_test(NAME test_monitoring COMMAND /usr/bin/python3
  ${CMAKE_SOURCE_DIR}/tests/monitoring/check_monitoring.py ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
set_tests_properties(test_monitoring PROPERTIES TIMEOUT 300)
