"""bench.results_page: a dated docs/results page rendered from a real benchmark run's JSON.

The run is real (bench/bench_decode.py in a child pytest, 3 paired rounds), so
the page is checked against what bench.gates says about the same file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gates
from bench.results_page import main
from tests.test_docs import _links

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_json(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(
        os.environ,
        DYNPOSE_BENCH_DECODE_ROUNDS="3",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench/bench_decode.py",
            "-m",
            "bench",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-json={out}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0 and out.is_file(), r.stdout[-2000:] + r.stderr[-2000:]
    return out


@pytest.fixture()
def results_dir(tmp_path) -> Path:
    """A copy of the docs layout: docs/benchmarks.md beside docs/results/README.md."""
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    shutil.copy(REPO / "docs" / "benchmarks.md", docs / "benchmarks.md")
    shutil.copy(REPO / "docs" / "results" / "README.md", docs / "results" / "README.md")
    return docs / "results"


def test_page_is_named_by_the_run_date_and_agrees_with_the_gates(run_json, results_dir, capsys):
    assert main([str(run_json), "--out", str(results_dir)]) == 0
    date = json.loads(run_json.read_text())["datetime"][:10]
    page = results_dir / f"{date}-bench.md"
    text = page.read_text()
    assert text.startswith(f"# Benchmarks and gates ({date})")
    run = gates.load_run(run_json)
    rows = gates.check(run, json.loads(gates.DEFAULT_BASELINE.read_text()), partial=True)
    assert rows, "the decode benchmark stores paired figures"
    for r in rows:  # every figure, with the gate's own median and verdict
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{r.figure}` |"))
        shown = (
            "-" if r.value is None else f"{r.value:.4g}"
        )  # a figure the run lacks: NOT MEASURED, no number
        assert f"| {shown} |" in line and line.rstrip().endswith(f"| {r.status} |")
    index = (results_dir / "README.md").read_text()
    assert index.count(f"[{page.name}]({page.name})") == 1
    # the page's relative links resolve in the docs layout
    assert all(p is None or p.exists() for _, p, _ in _links(page))


def test_an_existing_page_is_kept_unless_forced(run_json, results_dir, capsys):
    assert main([str(run_json), "--out", str(results_dir), "--name", "x-bench.md"]) == 0
    page = results_dir / "x-bench.md"
    page.write_text("an older measurement\n")
    capsys.readouterr()
    assert main([str(run_json), "--out", str(results_dir), "--name", "x-bench.md"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: that results page exists already") and "--force" in err[0]
    )
    assert page.read_text() == "an older measurement\n"
    assert main([str(run_json), "--out", str(results_dir), "--name", "x-bench.md", "--force"]) == 0
    assert page.read_text().startswith("# Benchmarks and gates")
    assert (results_dir / "README.md").read_text().count("[x-bench.md](x-bench.md)") == 1


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not_json",
        "no_benchmarks",
        "no_date",
        "out_is_file",
        "bad_name",
        "hidden_name",
        "index_without_table",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, run_json, results_dir, tmp_path, capsys):
    src, args = run_json, ["--out", str(results_dir)]
    if case == "missing":
        src = tmp_path / "nope.json"
    elif case == "not_json":
        src = tmp_path / "bad.json"
        src.write_text("{not json")
    elif case == "no_benchmarks":
        src = tmp_path / "bad.json"
        src.write_text("{}")
    elif case == "no_date":
        run = json.loads(run_json.read_text())
        run.pop("datetime")
        src = tmp_path / "nodate.json"
        src.write_text(json.dumps(run))
    elif case == "out_is_file":
        args = ["--out", str(results_dir / "README.md")]
    elif case == "bad_name":
        args += ["--name", "../escape.md"]
    elif case == "hidden_name":
        args += ["--name", ".md"]
    elif case == "index_without_table":
        (results_dir / "README.md").write_text("# Dated measurements\n\nno table yet\n")
    before = {p.name: p.read_bytes() for p in results_dir.iterdir()}
    assert main([str(src), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert {p.name: p.read_bytes() for p in results_dir.iterdir()} == before
    assert not (results_dir.parent / "escape.md").exists()
