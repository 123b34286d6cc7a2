"""The servers the pipeline talks to: the Prefect API, the MLflow tracking server, a Dask
scheduler; and their health checks."""
