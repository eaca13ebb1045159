"""tools/deps_canary.sh never reports a pass for releases it could not fetch.

With the package index unreachable, ``pip install --upgrade`` keeps the installed copies and
exits 0, so a canary that trusted it would run the tests on the old releases and call the
newest ones good. The script must stop with exit 2 ("nothing tested") before any test runs.
Real script, real venv, real pip against a dead index address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a venv and pip's index look-ups: ~20 s
def test_unreachable_index_is_nothing_tested(tmp_path) -> None:
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        TMPDIR=str(tmp_path),
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_EXTRA_INDEX_URL="",
        PIP_FIND_LINKS="",
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
        PIP_NO_INPUT="1",
    )
    r = subprocess.run(
        ["bash", "tools/deps_canary.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "nothing tested" in r.stderr
    assert "passed" not in r.stdout and "newest releases pass" not in r.stdout
    assert not any(tmp_path.iterdir()), "the throwaway venv was left behind"
