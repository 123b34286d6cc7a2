"""The environment is the lock's: each installed package that uv.lock pins has its locked
version."""

import importlib.metadata
import tomllib

from tests.conftest import REPO


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_installed_versions_are_the_locked_ones():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {_normal(p["name"]): p["version"] for p in lock["package"] if "version" in p}
    installed = {_normal(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    # the code reaches into these; the CPU build of TensorFlow is the tested one
    for name in ("dvc", "mlflow", "prefect", "keras", "tensorflow-cpu", "pytest", "uv"):
        assert name in installed and name in locked, name
    differ = {
        name: (version, locked[name])
        for name, version in installed.items()
        if name in locked and name != "catdog" and version != locked[name]
    }
    assert differ == {}, "installed (left) vs uv.lock (right); run scripts/setup.sh"
