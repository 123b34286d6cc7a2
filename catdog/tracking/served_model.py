"""The served model: image file bytes in, probability of dog out (an MLflow pyfunc, from code).

``evaluate`` logs this file with the champion's Keras model (one taking raw images) as the artifact
``keras_model`` and registers it as ``catdog``, alias ``champion``. MLflow's scoring server
(``mlflow models serve``) base64-decodes the ``image`` column because the signature declares it
binary, so a client posts the photos' own bytes:

    {"dataframe_split": {"columns": ["image"], "data": [["<base64 of a JPEG>"], ...]}}

Images go through :func:`catdog.predict.predict_images`, the code ``catdog predict`` runs, so the
two give the same probabilities. It needs the ``catdog`` package where the model is served (the
project's environment: ``mlflow models serve --env-manager local``).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from catdog.vocabulary import THRESHOLD_KEY

__all__ = ["CatDogImageModel"]


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # base64 text, when called without the signature's decoding
        return base64.b64decode(value)
    raise TypeError(f"image must be bytes or base64 text, not {type(value).__name__}")


class CatDogImageModel(PythonModel):
    """Rows with an ``image`` column of file bytes in; ``prob_dog``, ``label``, ``error`` out."""

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], safe_mode=True)
        config = context.model_config or {}
        self.threshold = float(config.get(THRESHOLD_KEY, 0.5))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from catdog.predict import predict_images

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in frame.columns:
            raise ValueError(f"expected a column 'image' of file bytes, got {list(frame.columns)}")
        threshold = float((params or {}).get("threshold", self.threshold))
        count = len(frame)
        prob: list[float | None] = [None] * count  # null in JSON for an unreadable image
        label, error = [""] * count, [""] * count
        with tempfile.TemporaryDirectory(prefix="catdog-serve-") as scratch:
            files = []
            for index, value in enumerate(frame["image"]):
                path = Path(scratch) / f"{index:08d}"
                try:
                    path.write_bytes(_as_bytes(value))
                except (TypeError, ValueError) as problem:
                    error[index] = str(problem)
                    continue
                files.append(path)
            table, skipped = predict_images(self.model, files, threshold=threshold)
        for path, reason in skipped:
            error[int(Path(path).name)] = reason
        for row in table.itertuples(index=False):
            index = int(Path(row.path).name)
            prob[index], label[index] = float(row.prob_dog), str(row.label)
        return pd.DataFrame(
            {"prob_dog": pd.Series(prob, dtype=object), "label": label, "error": error}
        )


set_model(CatDogImageModel())
