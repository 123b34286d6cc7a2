"""The shared Kaggle photos (../shared/data/dogs-vs-cats-2400): read in place, never copied."""

from __future__ import annotations

import pytest

from catdog.ingest import ingest_source
from catdog.sources import prepare_source
from tests.conftest import SHARED_PHOTOS

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (SHARED_PHOTOS / "train").is_dir(), reason="shared photos absent"),
]


def test_ingest_accepts_all_2400_shared_photos(tmp_path):
    prepared = prepare_source(SHARED_PHOTOS / "train", tmp_path / "work")
    assert prepared.layout == "flat"
    report = ingest_source(prepared, tmp_path / "raw", max_pixels=40_000_000, min_per_class=1)
    assert report.counts == {
        "accepted": 2400,
        "rejected": 0,
        "skipped": 0,
        "per_class": {"cat": 1200, "dog": 1200},
    }
    assert all(row["out"].startswith(row["label"] + "/") for row in report.to_json()["accepted"])
