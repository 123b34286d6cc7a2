"""catdog's core: the pipeline's data and ML logic as plain functions (no Prefect, MLflow or DVC)."""
