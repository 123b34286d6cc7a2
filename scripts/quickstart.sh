#!/usr/bin/env bash
# One command from a fresh clone: create the environment and run the whole pipeline on the
# embedded synthetic data as one process (`catdog run`: one Prefect flow run, each stage recorded
# in dvc.lock as `dvc repro` would, same bytes; eight `dvc repro` stage processes take ~2 min more).
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true \
    TF_CPP_MIN_LOG_LEVEL=3

scripts/setup.sh
# DVC stages call `python -m catdog.cli ...`: they need the environment on PATH.
# shellcheck disable=SC1091
source .venv/bin/activate

if ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "quickstart: not a git repository; DVC needs one (clone the project with git)." >&2
    exit 1
fi

started=$(date +%s)
catdog run
elapsed=$(( $(date +%s) - started ))
prefect_ui=$(catdog prefect-server status | sed -n 's/^Prefect server \([^ ]*\) (UI).*/\1/p' || true)

echo
echo "Pipeline done in ${elapsed} s. Test-set metrics:"
dvc metrics show
echo
echo "Results:"
echo "  reports/comparison.md     the three models side by side (and the book's figures)"
echo "  reports/figures/          confusion matrices, ROC, calibration, training curves, augmentation"
echo "  dvc plots show            the same as an HTML page (dvc_plots/index.html, works offline)"
echo "  models/                   classifier.keras, finetune.keras, scratch.keras"
echo "  catdog ui                 MLflow's UI on http://127.0.0.1:5000 (runs and their comparison)"
echo "  ${prefect_ui:-catdog prefect-server start}    Prefect's UI: a flow run per stage, its logs and artifacts"
echo "                            (the project's Prefect server runs on; catdog prefect-server stop)"
echo "Run 'source .venv/bin/activate' first to use dvc and catdog in this shell."
