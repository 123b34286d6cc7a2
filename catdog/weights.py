"""Which VGG16 conv-base weights to use (``features.weights``), resolved before any work.

``imagenet`` uses Keras' cache (or downloads into it) and fails with instructions when neither
works; a path loads that weights file; ``none`` is untrained; ``auto`` is ImageNet when it can be
had and untrained otherwise, with a warning that the caller must record.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from catdog.errors import WeightsUnavailableError
from catdog.io import atomic_file

__all__ = [
    "IMAGENET_FILE",
    "IMAGENET_URL",
    "ResolvedWeights",
    "WeightsUnavailableError",
    "keras_cache_path",
    "resolve_weights",
]

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + IMAGENET_FILE
UNTRAINED_WARNING = (
    "ImageNet VGG16 weights are unavailable (offline, and not in Keras' cache): using an "
    "UNTRAINED conv base. Transfer-learning results (features, classifier, finetune) mean "
    "little; expect near-chance accuracy on real photos. Put {file} at {path} or set "
    "features.weights to a weights file to fix this."
)


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights a stage will use, as recorded on MLflow runs and in the metrics."""

    requested: str
    kind: str  # imagenet | file | untrained
    path: Path | None = None
    sha256: str = ""
    warning: str = ""

    @property
    def pretrained(self) -> bool:
        return self.kind != "untrained"

    @property
    def label(self) -> str:
        """Short description, e.g. ``imagenet``, ``file:weights.h5`` or ``untrained``."""
        return f"file:{self.path.name}" if self.kind == "file" and self.path else self.kind


def keras_cache_path() -> Path:
    """Where Keras keeps downloaded application weights (honours ``KERAS_HOME``)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / IMAGENET_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, timeout_s: float) -> str:
    """Download ``url`` to ``target`` atomically; return '' or the reason it failed."""
    try:
        with atomic_file(target) as tmp:
            request = urllib.request.urlopen(url, timeout=timeout_s)
            with request, tmp.open("wb") as out:
                for block in iter(lambda: request.read(1 << 20), b""):
                    out.write(block)
    except (TimeoutError, urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))
    return ""


def resolve_weights(
    requested: str, *, root: Path, download: bool = True, timeout_s: float = 20.0
) -> ResolvedWeights:
    """Resolve ``features.weights`` to concrete weights, before any heavy work.

    Args:
        requested: ``auto``, ``imagenet``, ``none`` or a path to a ``.h5`` weights file.
        root: Relative paths are taken from this folder (the workspace).
        download: Try to download ImageNet weights into Keras' cache when missing.
        timeout_s: Network timeout of that download.

    Raises:
        WeightsUnavailableError: ``imagenet`` cannot be found or downloaded, or the path is
            missing; the message says how to provide the file.
    """
    if requested == "none":
        return ResolvedWeights(requested, "untrained")
    if requested not in {"auto", "imagenet"}:
        path = (root / requested).resolve()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"features.weights: weights file {requested!r} not found (looked at {path}). "
                "Give a Keras .h5/.weights.h5 file of VGG16 without its top, or use "
                "'imagenet', 'auto' or 'none'."
            )
        return ResolvedWeights(requested, "file", path, _sha256(path))
    cache = keras_cache_path()
    failure = ""
    if not cache.is_file() and download:
        failure = _download(IMAGENET_URL, cache, timeout_s)
    if cache.is_file():
        return ResolvedWeights(requested, "imagenet", cache, _sha256(cache))
    if requested == "imagenet":
        raise WeightsUnavailableError(
            f"features.weights=imagenet: the ImageNet VGG16 weights are not in Keras' cache "
            f"({cache}) and could not be downloaded ({failure or 'download disabled'}). "
            f"Download {IMAGENET_URL} on a machine with internet access and copy it to {cache} "
            "(or set KERAS_HOME), or set features.weights to the file's path, "
            "e.g. `dvc exp run -S features.weights=path/to/" + IMAGENET_FILE + "`."
        )
    return ResolvedWeights(
        requested,
        "untrained",
        warning=UNTRAINED_WARNING.format(file=IMAGENET_FILE, path=cache),
    )
