/* libaero-test-gone.so: the library test-needs-lib needs (needs_lib.c). */
int aero_test_gone(void);
int aero_test_gone(void) { return 42; }
