"""The TensorRT API harness itself: real signatures, and the meta-test that it fails wrong calls.

The cross-version tests run the probe in one subprocess per version (two
TensorRT versions cannot share a process), so this file checks 10.3 AND 11.4
whichever version the in-process fixture selected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trt_harness.api import HarnessApiError
from tests.trt_harness.loader import VERSIONS, harness_dir

pytestmark = pytest.mark.trt
REPO = Path(__file__).resolve().parents[1]


def _probe(major: str) -> dict:
    if not (harness_dir() / f"trt{major}" / "site").is_dir():
        raise RuntimeError("TensorRT harness missing; run: bash tests/setup/setup_trt_harness.sh")
    out = subprocess.run(
        [sys.executable, "-m", "tests.trt_harness.probe", "--major", major],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    return {m: _probe(m) for m in VERSIONS}


def test_both_versions_build_and_run(probes: dict) -> None:
    for major, res in probes.items():
        assert res["version"] == VERSIONS[major]
        assert res["results"]["ok"] == "ok", res


@pytest.mark.parametrize("scenario", ["weak_typing_fp16", "int8_flag", "explicit_batch", "int8_calibrator"])
def test_calls_removed_in_11_fail_only_on_11(probes: dict, scenario: str) -> None:
    """Meta-test: weak-typing/INT8-calibrator calls work on 10.3 and fail the 11.x harness."""
    assert probes["10"]["results"][scenario] == "ok"
    assert (
        "AttributeError" in probes["11"]["results"][scenario]
        or "HarnessApiError" in probes["11"]["results"][scenario]
    )


def test_call_absent_from_10_3_fails_only_on_10(probes: dict) -> None:
    assert "has no tensorrt.TilingOptimizationLevel" in probes["10"]["results"]["tiling_level"]
    assert probes["11"]["results"]["tiling_level"] == "ok"


@pytest.mark.parametrize(
    "scenario,needle",
    [
        ("broken_name", "has no attribute 'set_memory_pool_limt'"),
        ("misspelt_property", "has no attribute 'builder_optimisation_level'"),
        ("wrong_arg_type", "argument 'pool' expects MemoryPoolType"),
    ],
)
def test_broken_api_use_in_builder_fails_every_version(probes: dict, scenario: str, needle: str) -> None:
    for res in probes.values():
        assert needle in res["results"][scenario], res["results"][scenario]


def test_signatures_come_from_the_real_docstrings(trt_world) -> None:
    spec = trt_world.spec
    kind, sigs = spec.member("IBuilderConfig", "set_memory_pool_limit")
    assert kind == "method"
    assert [p.name for p in sigs[0].params] == ["self", "pool", "pool_size"]
    kind, (typ, settable) = spec.member("IBuilderConfig", "builder_optimization_level")
    assert kind == "property" and typ == "int" and settable
    kind, (typ, settable) = spec.member("Builder", "num_DLA_cores")
    assert kind == "property" and not settable
    # set_input_shape is overloaded (tuple / list / Dims): all three parsed
    assert len(spec.member("IExecutionContext", "set_input_shape")[1]) == 3


def test_fakes_reject_what_the_real_class_lacks(trt_world) -> None:
    trt = trt_world.trt
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    with pytest.raises(HarnessApiError, match="not a settable property"):
        builder.num_DLA_cores = 4  # read-only in every version
    with pytest.raises(HarnessApiError, match="matches no signature"):
        builder.create_network("strongly typed")  # flags are an int
    with pytest.raises(HarnessApiError, match="no tensorrt.NoSuchThing"):
        _ = trt.NoSuchThing
    with pytest.raises(HarnessApiError, match="matches no signature"):
        trt.Builder()  # logger is required
    # return types are followed: the config's timing cache is an ITimingCache fake
    cache = config.create_timing_cache(b"")
    assert type(cache).__name__ == "Fake" and cache._cls == "ITimingCache"
