# At most 20 lines in any second (core/line_budget.c), the budget of gRPC's
# log lines.
aero_unit_test(test_line_budget SOURCES ${CMAKE_SOURCE_DIR}/core/line_budget.c)
