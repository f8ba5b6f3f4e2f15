# The sink queues and their threads (core/sink_pipeline.c) with sinks the
# test defines itself (a struct plugin pointing at its own vtable).
aero_unit_test(test_sink_pipeline LIBS aerocore)
target_include_directories(test_sink_pipeline PRIVATE ${CMAKE_SOURCE_DIR}/plugins/common)
