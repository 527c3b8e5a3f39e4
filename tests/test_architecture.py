"""The composition root loads the parts by import statements that tools can see, never by a string."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("trackgate", "gateway", "adapters", "schemas", "workers")


def test_no_project_code_calls_import_module():
    found = []
    for folder in PROJECT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if (ROOT / "trackgate") in path.parents and path.relative_to(ROOT / "trackgate").parts[
                0
            ] in PROJECT:
                continue  # trackgate/gateway etc. are links to the top-level folders, scanned there
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
                imported = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
                if name == "import_module" or "import_module" in imported:
                    found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
    assert found == []


def test_the_cli_imports_the_worker_modules_it_runs():
    """Once hidden behind import_module: now plain imports, so ruff, mypy and the editor see them."""
    import trackgate.cli.quarantine
    import trackgate.cli.replay
    import trackgate.cli.serve
    import trackgate.workers.quarantine
    import trackgate.workers.replay
    import trackgate.workers.worker

    assert trackgate.cli.serve.worker_process is trackgate.workers.worker
    assert trackgate.cli.quarantine.quarantine_store is trackgate.workers.quarantine
    assert trackgate.cli.replay.replays is trackgate.workers.replay


def test_the_serving_path_loads_no_worker_and_no_cli_code():
    """The rule the import direction protects (DESIGN.md), checked where it matters: a fresh process
    that loads the ASGI app as uvicorn does."""
    script = (
        "import sys, trackgate.gateway.asgi\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('trackgate.workers', 'trackgate.cli',"
        " 'trackgate.up', 'trackgate.embedded', 'trackgate.migrate', 'trackgate.sources')))\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
