"""The workspace: where it is, what lives there besides the pipeline's outputs, and (with DVC)
which stages are done."""
