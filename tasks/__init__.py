"""One thin Prefect task per pipeline stage: read inputs, call the core, write outputs atomically."""
