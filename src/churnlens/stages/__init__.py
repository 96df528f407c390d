"""One thin entry point per DVC stage: read inputs, call the library, write outputs."""
