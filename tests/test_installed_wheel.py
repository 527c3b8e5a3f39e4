"""The wheel, installed: what a user gets from ``pip install trackgate``, not the editable source tree.

The wheel is built from a copy of the files it is made of (pyproject.toml, README.md and the folders its
``package-dir`` names), so that the build neither writes into the repository nor sees anything else in it;
it is installed without dependencies into a target directory that a fresh interpreter puts first on its
path, beside the dependencies this environment already has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in the installed copy: every module it imports must come from there, not from the source tree.
PROBE = """
import json, sys
from importlib.resources import files
sys.path.insert(0, sys.argv[1])
import trackgate, trackgate.cli, trackgate.gateway.asgi
app = trackgate.gateway.asgi.app_from_env()  # builds the app; connects only when served
print(json.dumps({
    "files": [trackgate.__file__, trackgate.cli.__file__, trackgate.gateway.asgi.__file__],
    "app": f"{type(app).__module__}.{type(app).__name__}",
    "project": sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in
                       ("trackgate", "gateway", "adapters", "schemas", "workers")}),
    "migrations": sorted(p.name for p in (files("trackgate.schemas") / "sql").iterdir()),
    "dashboard": sorted(
        name for name in ("dashboard.html", "dashboard.js", "dashboard.css", "uplot/uPlot.iife.min.js",
                          "uplot/uPlot.min.css", "uplot/LICENSE")
        if (files("trackgate.gateway") / "static" / name).is_file()
    ),
}))
"""


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    pyproject = ROOT / "pyproject.toml"
    folders = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"].values())
    for folder in sorted(folders):
        # symlinks kept: trackgate/gateway etc. point at the top-level folders, as in the repository
        shutil.copytree(
            ROOT / folder, source / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = dist.glob("trackgate-*.whl")
    return wheel


def test_the_installed_wheel_is_one_import_name_that_serves_and_runs_the_cli(tmp_path):
    wheel = build_wheel(tmp_path)

    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"trackgate"}
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["trackgate"]

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == [
        "bin",
        "trackgate",
    ]

    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(target)],
        env={
            **os.environ,
            "TRACKGATE_DATABASE_URL": "postgresql://127.0.0.1:1/x",
            "TRACKGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the repository: its trackgate/ folder must not be importable by accident
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    for loaded in probe["files"]:
        assert Path(loaded).is_relative_to(target), loaded
    assert probe["app"] == "trackgate.gateway.ingest.IngestFront"
    assert probe["project"] == ["trackgate"]  # no top-level gateway/adapters/schemas/workers was imported
    shipped = sorted(p.name for p in (ROOT / "schemas" / "sql").glob("*.sql"))
    assert probe["migrations"] == shipped and shipped
    assert len(probe["dashboard"]) == 6, probe["dashboard"]  # the page, its assets, uPlot beside its license
