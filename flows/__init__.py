"""The Prefect flows: one per stage (flows.stages) and the whole pipeline (flows.pipeline)."""
