"""Where a model looks on photos it never trained on: ``catdog explain`` on shared photos, as one
figure for the README.

Runs ``catdog explain`` (the command people run) with ``--model`` on the first ``--per-class``
cats and dogs of ``select/`` in ``../shared/data/dogs-vs-cats-200px`` (never ``report/``, which
is kept for reporting once), then lays its overlays out in one PNG, each captioned with the
probability of dog and whether the answer is right. Writes ``select.png`` and ``select.csv``
(``catdog explain``'s table) into ``--out``.

    python bench/explain_photos.py --model /tmp/catdog-scratch-recipes/models/best-seed42.keras
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SELECT = REPO.parent / "shared" / "data" / "dogs-vs-cats-200px" / "select"
CELL = 200  # pixels: the shared copies' longest side


def first_photos(folder: Path, per_class: int) -> list[Path]:
    """The first ``per_class`` cats then dogs of ``folder``, by number (``cat.3000.jpg``...)."""

    def number(path: Path) -> int:
        return int(path.stem.split(".")[1])

    return [
        photo
        for label in ("cat", "dog")
        for photo in sorted(folder.glob(f"{label}.*.jpg"), key=number)[:per_class]
    ]


def letterboxed(path: Path) -> np.ndarray:
    """The overlay in a ``CELL`` x ``CELL`` square, on black, its proportions kept."""
    from PIL import Image

    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
        square = Image.new("RGB", (CELL, CELL))
        square.paste(picture, ((CELL - picture.width) // 2, (CELL - picture.height) // 2))
    return np.asarray(square)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="any model `catdog explain` takes")
    parser.add_argument("--photos", type=Path, default=SELECT, help="default: select/")
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--caption", default="", help="what the model is, for the title")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/gradcam")
    args = parser.parse_args()

    import pandas as pd

    from catdog.plots.grid import plot_image_grid
    from catdog.sources import label_for

    photos = first_photos(args.photos, args.per_class)
    if not photos:
        raise SystemExit(f"no cat.*.jpg or dog.*.jpg in {args.photos}")
    catdog = str(Path(sys.executable).parent / "catdog")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MLFLOW_DISABLE_TELEMETRY="true")
    with tempfile.TemporaryDirectory(prefix="catdog-explain-bench-") as overlays:
        command = [catdog, "explain", *map(str, photos), "--model", args.model]
        shown = subprocess.run(
            [*command, "--out", overlays], cwd=REPO, env=env, text=True, capture_output=True
        )
        if shown.returncode != 0:
            raise SystemExit(shown.stderr.strip())
        table = pd.read_csv(io.StringIO(shown.stdout))
        pictures = np.stack([letterboxed(Path(p)) for p in table["heatmap"]])
    actual = [label_for(Path(Path(p).name)) for p in table["path"]]  # cat.3000.jpg: a cat
    titles = [
        f"{Path(p).stem}: dog {prob:.2f} {'right' if label == truth else 'WRONG'}"
        for p, prob, label, truth in zip(
            table["path"], table["prob_dog"], table["label"], actual, strict=True
        )
    ]
    right = sum(label == truth for label, truth in zip(table["label"], actual, strict=True))
    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot_image_grid(
        pictures,
        args.out / "select.png",
        titles=titles,
        ncols=args.per_class,
        title=f"Grad-CAM of {args.caption or Path(args.model).name} on select/ photos "
        f"({right} of {len(table)} right)",
    )
    table.assign(path=[Path(p).name for p in table["path"]]).drop(columns="heatmap").to_csv(
        args.out / "select.csv", index=False
    )
    print(f"{figure.relative_to(REPO)}: {right} of {len(table)} right")


if __name__ == "__main__":
    main()
