"""What each ``catdog`` command does, one small function per command (the table is in cli.main)."""

from __future__ import annotations

import sys
from pathlib import Path

from catdog.io import write_text
from catdog.predict import collect_images, predict_images
from tracking.models import load_model_reference

__all__ = ["run_predict"]


def run_predict(
    inputs: list[Path],
    reference: str,
    out: Path | None,
    workspace: Path,
    tracking_home: Path,
    threshold: float = 0.5,
) -> int:
    """Write path, prob_dog, label as CSV (stdout or ``out``); skipped files go to stderr."""
    files, problems = collect_images(inputs)
    model = load_model_reference(reference, workspace, tracking_home)
    table, skipped = predict_images(model, files, threshold=threshold)
    for path, reason in [*problems, *skipped]:
        sys.stderr.write(f"catdog predict: skipped {path}: {reason}\n")
    text = table.to_csv(index=False, lineterminator="\n")
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        sys.stderr.write(f"wrote {len(table)} predictions to {out}\n")
    return 0 if len(table) else 1
