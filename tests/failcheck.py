"""Helpers for the bad-input corpus: what every failure must look like, and strict JSON reading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def assert_one_line_failure(rc: int, stderr: str, code: int, *names: str) -> str:
    """Exit ``code``, no traceback, exactly one ``error:`` line, naming every one of ``names``."""
    assert rc == code, f"exit {rc}, wanted {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"wanted one error line, got:\n{stderr}"
    assert "internal error" not in stderr, stderr
    for n in names:
        assert n in errors[0], f"{n!r} not named in: {errors[0]}"
    return errors[0]


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-JSON token {name} in output")


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN / Infinity (what Python writes by default and JSON forbids)."""
    return json.loads(text, parse_constant=_no_constants)


def strict_jsonl(path: Path) -> list[Any]:
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends with a partial line"
    return [strict_json(line) for line in data.decode().splitlines()]


def run_in_process(
    main: Callable[[Sequence[str]], int], argv: Sequence[str], capsys: Any
) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    got = capsys.readouterr()
    return rc, got.out, got.err


def run_module(module: str, *args: str, timeout: float = 240, **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
