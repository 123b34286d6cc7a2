"""catdog's core: the data and ML logic as plain functions (no Prefect, MLflow or DVC)."""
