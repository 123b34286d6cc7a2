"""MLflow: one parent run per pipeline execution with a child per stage, lineage, the model
registry and its champion, comparison of executions, and the served model."""
