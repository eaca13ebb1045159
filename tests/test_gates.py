"""The FPS gates fail on a real regression: a decode slowed by a test fixture.

A real pytest-benchmark run of bench/bench_decode.py (numpy decode vs the
naive per-keypoint loop, on fewer crops to stay fast) writes its
``--benchmark-json``; bench.gates reads it against the committed baseline.
With the fixture that makes ``runtime.decode.decode_probmaps`` sleep, the
same-run ratio collapses and the gate must exit 1; without it, it passes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gates

REPO = Path(__file__).resolve().parents[1]
CROPS = 16

# Loaded into the inner pytest run with -p: an autouse fixture shrinks the workload and,
# when asked, slows the decode the benchmark times (monkeypatched, so nothing leaks).
PLUGIN = '''
import os, time
import pytest

@pytest.fixture(autouse=True)
def _decode_under_test(monkeypatch):
    import bench.bench_decode as bd
    from runtime import decode as D
    monkeypatch.setattr(bd, "N_CROPS", int(os.environ["GATE_TEST_CROPS"]))
    delay = float(os.environ.get("GATE_TEST_DECODE_SLEEP", "0"))
    if delay:
        fast = D.decode_probmaps
        def slow(*a, **k):
            time.sleep(delay)
            return fast(*a, **k)
        monkeypatch.setattr(D, "decode_probmaps", slow)
'''


def run_decode_benchmark(tmp: Path, sleep_s: float) -> dict:
    """Run the real decode benchmark in a child pytest; returns its benchmark JSON."""
    (tmp / "slow_decode_plugin.py").write_text(PLUGIN)
    out = tmp / f"bench_{sleep_s}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp), str(REPO), os.environ.get("PYTHONPATH", "")]),
               GATE_TEST_CROPS=str(CROPS), GATE_TEST_DECODE_SLEEP=str(sleep_s), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench/bench_decode.py", "-m", "bench", "-q",
                           "-p", "slow_decode_plugin", f"--benchmark-json={out}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.is_file(), f"benchmark JSON not written:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def baseline() -> dict:
    return json.loads(gates.DEFAULT_BASELINE.read_text())


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory) -> dict:
    return run_decode_benchmark(tmp_path_factory.mktemp("gate_normal"), 0.0)


@pytest.fixture(scope="module")
def slowed_run(tmp_path_factory) -> dict:
    return run_decode_benchmark(tmp_path_factory.mktemp("gate_slow"), 0.25)


def _decode_row(rows: list[gates.Row]) -> gates.Row:
    return next(r for r in rows if r.figure == "decode_numpy_over_naive")


def test_gate_passes_on_the_real_decode(normal_run, baseline, tmp_path, capsys):
    rows = gates.check(normal_run, baseline)
    assert _decode_row(rows).status == "PASS", gates.format_rows(rows)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(normal_run))
    assert gates.main([str(path), "--partial"]) == 0
    assert "all gates pass" in capsys.readouterr().out


def test_gate_fails_when_the_decode_is_slowed(slowed_run, normal_run, baseline, tmp_path, capsys):
    row = _decode_row(gates.check(slowed_run, baseline))
    assert row.status == "FAIL"
    assert row.value < gates.extract_figures(normal_run)["decode_numpy_over_naive"] / 5
    path = tmp_path / "run.json"
    path.write_text(json.dumps(slowed_run))
    assert gates.main([str(path), "--partial"]) == 1
    out = capsys.readouterr().out
    assert "GATE FAILED" in out and "decode_numpy_over_naive" in out


def _pipeline_record(name: str, stage: str, rate: float, **info) -> dict:
    cond = {"backend": "ort", "cpu_model": "Test CPU", "gpu_model": None, "nvpmodel_mode": None,
            "jetson_clocks": None}
    return {"name": name, "fullname": f"bench/test_bench_pipeline.py::{name}",
            "stats": {"min": 118 / rate}, "extra_info": {"stage": stage, "crops_per_s": rate, "conditions": cond, **info}}


def synthetic_pipeline_run(dyn_rate: float) -> dict:
    """The shape bench/test_bench_pipeline.py writes, with chosen rates (gate arithmetic only)."""
    return {"benchmarks": [
        _pipeline_record("test_net[ort-small]", "net", 18.0, role="small"),
        _pipeline_record("test_net[ort-large]", "net", 13.0, role="large"),
        _pipeline_record("test_router[ort]", "router", 900.0),
        _pipeline_record("test_pipeline[ort-large]", "pipeline", 12.8, policy="large", p=None, large_fraction=1.0),
        _pipeline_record("test_pipeline[ort-small]", "pipeline", 17.5, policy="small", p=None, large_fraction=0.0),
        _pipeline_record("test_pipeline[ort-dyn-p50]", "pipeline", dyn_rate, policy="dyn", p=50.0,
                         large_fraction=0.5),
    ]}


def test_mixture_arithmetic_and_ratio_gate(baseline):
    ideal = 1 / (0.5 / 18.0 + 0.5 / 13.0 + 1 / 900.0)
    run = synthetic_pipeline_run(0.97 * ideal)
    figs = gates.extract_figures(run)
    assert figs["ort:dyn-p50_share_of_ideal"] == pytest.approx(0.97)
    assert figs["ort:dyn-p50_outside_nets_share"] == pytest.approx(0.03)
    assert figs["ort:dyn-p50_over_large"] == pytest.approx(0.97 * ideal / 12.8)
    assert figs["ort:large_outside_nets_share"] == pytest.approx(1 - 12.8 / 13.0)
    slow = {r.figure: r.status for r in gates.check(synthetic_pipeline_run(0.6 * ideal), baseline)}
    assert slow["ort:dyn-p50_share_of_ideal"] == "FAIL" and slow["ort:dyn-p50_over_large"] == "FAIL"


def test_absolute_gates_only_on_the_same_machine_kind(baseline, tmp_path):
    run = synthetic_pipeline_run(15.0)
    rec = gates.record(run, {"ratios": {}}, tolerance=0.2, ratios_too=False)
    assert len(rec["machines"]) == 1 and rec["machines"][0]["fps"]["test_pipeline[ort-dyn-p50]"] == 15.0
    assert all(r.status == "PASS" for r in gates.check_absolute(run, rec))
    slower = synthetic_pipeline_run(10.0)
    status = {r.figure: r.status for r in gates.check_absolute(slower, rec)}
    assert status["absolute: test_pipeline[ort-dyn-p50]"] == "FAIL"
    for b in slower["benchmarks"]:
        b["extra_info"]["conditions"]["cpu_model"] = "Another CPU"
    assert {r.status for r in gates.check_absolute(slower, rec)} == {"INFO"}
    # Re-recording the same kind replaces its entry instead of piling up.
    assert len(gates.record(run, rec, tolerance=0.2, ratios_too=False)["machines"]) == 1
