"""`dvc plots show` must produce an index.html that renders without network access.

DVC's default HTML template loads vega, vega-lite and vega-embed from a CDN. The project
ships `.dvc/plots/offline.html` with the three libraries inlined and points
`plots.html_template` at it; this test applies the project's template and config to a
fresh DVC repo and checks the page it produces is self-contained.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")

LOSSES = ("0.6931", "0.4321", "0.2468")


def _run(*args: str | os.PathLike[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.e2e
def test_dvc_plots_show_is_self_contained(tmp_path: Path) -> None:
    # The project's setting, as a fresh clone sees it. A relative value is resolved
    # against the .dvc directory (dvc/commands/plots.py), so it travels with the repo.
    template_setting = _run(DVC, "config", "--project", "plots.html_template", cwd=REPO_ROOT)
    template_setting = template_setting.strip()
    assert template_setting, "plots.html_template is not set in .dvc/config"
    assert not os.path.isabs(template_setting), "use a path relative to .dvc/"
    template = REPO_ROOT / ".dvc" / template_setting
    template_html = template.read_text(encoding="utf-8")
    inlined_scripts = re.findall(r"<script>\n(.*?)\n</script>", template_html, re.S)
    assert len(inlined_scripts) == 3  # vega, vega-lite, vega-embed
    assert template.stat().st_size < 2 * 1024 * 1024

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _run("git", "init", "-q", cwd=tmp_path)
    _run(DVC, "init", "-q", cwd=tmp_path)
    copied = tmp_path / ".dvc" / template_setting
    copied.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, copied)
    _run(DVC, "config", "plots.html_template", template_setting, cwd=tmp_path)

    rows = "".join(f"{epoch},{loss}\n" for epoch, loss in enumerate(LOSSES))
    (tmp_path / "loss.csv").write_text("epoch,loss\n" + rows, encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n  - loss.csv:\n      x: epoch\n      y: loss\n", encoding="utf-8"
    )

    _run(DVC, "plots", "show", cwd=tmp_path)
    html = (tmp_path / "dvc_plots" / "index.html").read_text(encoding="utf-8")

    # No script is fetched from anywhere: DVC's default template has three CDN <script src>.
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I), "page loads a remote script"
    assert "cdn.jsdelivr.net" not in html
    # The libraries are inlined verbatim and define the globals the plot code calls.
    for script in inlined_scripts:
        assert len(script) > 10_000
        assert script in html
    for global_name in ("vega", "vegaLite", "vegaEmbed"):
        assert f".{global_name}=" in html

    # The plot itself: a vega-lite spec with the CSV's rows, embedded by vega-embed.
    match = re.search(r"var spec = (\{.*\});\s*vegaEmbed\('#loss_csv', spec\);", html)
    assert match, "no vegaEmbed call for loss.csv"
    spec = json.loads(match.group(1))
    assert spec["$schema"].endswith("/vega-lite/v5.json")
    values = spec["data"]["values"]
    assert [float(row["loss"]) for row in values] == [float(v) for v in LOSSES]
    assert [int(float(row["epoch"])) for row in values] == [0, 1, 2]
