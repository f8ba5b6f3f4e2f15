# relay.ini parsing and validation, the core settings, and the logger.
set(AERO_CONFIG_TEST_SRCS
  ${CMAKE_SOURCE_DIR}/core/config.c
  ${CMAKE_SOURCE_DIR}/core/settings.c
  ${CMAKE_SOURCE_DIR}/core/log.c)
aero_unit_test(test_config SOURCES ${AERO_CONFIG_TEST_SRCS} LIBS PkgConfig::INIH)
aero_unit_test(test_settings SOURCES ${AERO_CONFIG_TEST_SRCS} LIBS PkgConfig::INIH)
aero_unit_test(test_log SOURCES ${CMAKE_SOURCE_DIR}/core/log.c)
