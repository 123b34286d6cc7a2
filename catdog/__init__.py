"""catdog: the core's data and ML logic as plain functions (no Prefect, MLflow or DVC), and the
packages that run it: ``catdog.cli`` (the command line), ``catdog.servers``, ``catdog.tracking``
(MLflow) and ``catdog.workspace``. The stages' tasks and flows are the workspace's own ``tasks/``
and ``flows/`` folders."""
