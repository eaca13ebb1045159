"""Every ONNX Runtime session is opened by ``runtime.backends.ort_session.open_session`` (issue #26), so what
the build times for budget routing (build/costs.py), calibrates and checks runs with the options the
runtime runs it with; a new ``InferenceSession(`` or ``SessionOptions(`` anywhere else fails here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
from tiny_detector import GOOD, SIZE, tiny_detector

REPO = Path(__file__).resolve().parents[1]
OWNER = "runtime/backends/ort_session.py"
CALLS = re.compile(r"\b(InferenceSession|SessionOptions)\(")


def _python_files() -> list[Path]:
    """The project's Python files: tracked or new (not ignored venvs, build outputs or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / f for f in listed if (REPO / f).is_file()]


def test_sessions_are_opened_only_by_open_session() -> None:
    found = {
        f"{p.relative_to(REPO)}:{n}"
        for p in _python_files()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if CALLS.search(line) and p != Path(__file__).resolve()
    }
    stray = sorted(f for f in found if f.split(":")[0] != OWNER)
    assert not stray, f"open ONNX Runtime sessions with runtime.backends.ort_session.open_session: {stray}"
    assert any(f.startswith(OWNER) for f in found)  # the scan sees the one place that does


def test_open_session_has_the_runtime_options(tmp_path: Path) -> None:
    from runtime.backends.ort_session import open_session

    path = tiny_detector(tmp_path / "t.onnx", [GOOD])
    sess = open_session(path, 3)
    so = sess.get_session_options()
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (3, 1)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = np.zeros((2, 3, SIZE, SIZE), np.float32)
    by_path = sess.run(None, {"images": x})[0]
    by_bytes = open_session(path.read_bytes(), providers=["NoSuchProvider"]).run(None, {"images": x})[0]
    np.testing.assert_array_equal(by_path, by_bytes)  # a serialized model; unknown providers fall back to CPU
    assert by_path.shape == (2, 5, 8)
