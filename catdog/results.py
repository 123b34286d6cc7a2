"""What a stage produced, as the flows record it (MLflow) and report it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StageResult", "flat"]


@dataclass
class StageResult:
    """What a stage produced, for the flow to record (MLflow) and report."""

    stage: str
    outputs: list[Path]
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] | None = None
    artifacts: list[Path] = field(default_factory=list)
    model_path: Path | None = None
    model: Any = None  # the trained Keras model in memory (logged as it is, not re-loaded)
    tags: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""  # the headline, for the stage's closing line: "24 images accepted"


def flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out
