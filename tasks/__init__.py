"""One thin Prefect task per stage: read inputs, call the core, write outputs atomically."""
