"""The Makefile's habit targets (issue 27): install, test, lint and bench exist and do what they say;
``make lint`` runs the real ruff over the repository and passes (dev extra)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", f"PYTHON={sys.executable}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_habit_targets_name_the_commands() -> None:
    r = _make("-n", "install", "test", "lint", "bench")
    assert r.returncode == 0, r.stderr
    assert f"{sys.executable} -m pip install torch==2.13.0 -e '.[dev]'" in r.stdout
    assert f"PYTHON={sys.executable} bash tools/test.sh" in r.stdout
    assert f"{sys.executable} -m ruff check ." in r.stdout and "bench.gates" in r.stdout
    r = _make("-n", "install", "EXTRAS=", "TORCH=")   # a runtime-only device: no torch, no extras
    assert r.stdout.split() == [sys.executable, "-m", "pip", "install", "-e", "'.'"], r.stdout


def test_make_lint_passes() -> None:
    r = _make("lint")
    assert r.returncode == 0 and "All checks passed" in r.stdout, r.stdout + r.stderr
