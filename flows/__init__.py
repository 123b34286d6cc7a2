"""The Prefect flows: one per pipeline stage (flows.stages) and the whole pipeline (flows.pipeline)."""
