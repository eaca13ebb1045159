"""The C++ build of the CPU path's decode and regions (runtime/heads/rowmath.cpp) against the numpy
references it replaces at run time: the decode bit for bit, the regions within one pixel of count
and ~1e-9 of shape, on realistic, tied, empty, invalid and odd-sized maps; and the library is
refused, with its reason, where it is absent, switched off or stale.

The test install (tools/test.sh: pip install -e .) builds the library; a test here fails, not
skips, when it is missing, so a CI image without a C++ compiler shows up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measure.workload import synthetic_probmaps
from runtime.heads import native
from runtime.heads.credible import blur_maps, calibrated_regions, credible_regions
from runtime.heads.decode import COCO_SIGMAS, decode_probmaps, decode_probmaps_reference, sparsemax

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_install_built_the_library() -> None:
    assert native.available(), native.status()
    assert native.status().startswith("native (_rowmath")


def _decodes_equal(maps: np.ndarray, sigmas: np.ndarray = COCO_SIGMAS) -> None:
    kp, sc = decode_probmaps(maps, sigmas)
    rkp, rsc = decode_probmaps_reference(maps, sigmas)
    np.testing.assert_array_equal(kp, rkp)  # NaN where the reference has NaN
    np.testing.assert_array_equal(sc, rsc)
    assert kp.dtype == rkp.dtype == np.float32 and sc.dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_decode_equals_the_reference_bit_for_bit(seed: int) -> None:
    _decodes_equal(synthetic_probmaps(5, seed=seed))


def test_decode_of_tied_empty_invalid_negative_and_fp16_maps() -> None:
    rng = np.random.default_rng(7)
    maps = (np.round(rng.random((3, 17, 64, 48)) * 3) / 3).astype(np.float32)  # ties everywhere
    maps[0, :3] = 0.0  # empty: argmax at (0, 0), as the reference
    maps[1, 2, 5, 5] = np.nan
    maps[1, 3, 6, 6] = np.inf
    maps[2, 4] = -maps[2, 4]  # all negative: the maximum is outside the band
    maps[2, 5] = 0.0
    maps[2, 5, 63, 47] = 1.0  # a single pixel in the corner: Newton skipped at the border
    _decodes_equal(maps)
    _decodes_equal(maps.astype(np.float16))
    _decodes_equal(synthetic_probmaps(2, seed=9).astype(np.float64))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 5),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    sharp=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**16),
)
def test_decode_of_any_map_size_and_sigmas(n, k, h, w, sharp, seed) -> None:
    """Any grid, any keypoint count and sigmas: radii larger than the map reflect as the reference."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, k, h * w)) * sharp).astype(np.float32)
    maps = sparsemax(logits).reshape(n, k, h, w)
    _decodes_equal(maps, rng.uniform(0.01, 0.2, size=k))


def _cov(ell: np.ndarray) -> np.ndarray:
    """[...,5] ellipses -> centre and covariance (angle-free: a near-circle's angle is arbitrary)."""
    a, b, t = ell[..., 2], ell[..., 3], ell[..., 4]
    c, s = np.cos(t), np.sin(t)
    return np.stack([ell[..., 0], ell[..., 1], (a * c) ** 2 + (b * s) ** 2, (a * s) ** 2 + (b * c) ** 2,
                     (a * a - b * b) * c * s], -1)  # fmt: skip


def _regions_close(maps: np.ndarray, masses: tuple[float, ...], sigma: float) -> float:
    """Native against numpy on the same maps; returns the fraction of counts that differ (by one)."""
    got = calibrated_regions(maps, masses, sigma)
    ref = credible_regions(blur_maps(maps, sigma) if sigma > 0 else maps, masses)
    diff = np.abs(got.n_pixels - ref.n_pixels)
    assert diff.max(initial=0) <= 1, "counts differ by more than the one pixel rounding can move"
    same = diff == 0
    np.testing.assert_allclose(got.threshold[same], ref.threshold[same], rtol=1e-9, atol=1e-15)
    ok = same & np.isfinite(ref.ellipse[..., 0])
    np.testing.assert_allclose(_cov(got.ellipse)[ok], _cov(ref.ellipse)[ok], rtol=1e-7, atol=1e-9)
    empty = ref.n_pixels == 0
    assert (got.n_pixels[empty] == 0).all() and np.isnan(got.ellipse[empty]).all()
    return float(1.0 - same.mean())


@pytest.mark.parametrize("sigma", [0.0, 1.0, 8.0])
def test_calibrated_regions_equal_the_references(sigma: float) -> None:
    maps = synthetic_probmaps(6, seed=4)
    moved = _regions_close(maps, (0.05, 0.5, 0.85, 0.9, 0.99, 1.0), sigma)
    assert moved < 0.01, f"{moved:.1%} of the counts moved by a pixel"


def test_regions_of_tied_empty_invalid_and_fp16_maps_in_any_mass_order() -> None:
    rng = np.random.default_rng(5)
    maps = (np.round(rng.random((3, 17, 64, 48)) * 4) / 4).astype(np.float32)
    maps[0, :4] = 0.0  # empty maps: count 0, NaN ellipse
    maps[1, 2, 5, 5] = np.nan
    maps[1, 3, 6, 6] = -np.inf
    maps[2, 1] = -maps[2, 1]  # negative only: empty after clipping
    maps[2, 4, 10:14, 5:11] = 1.0 / 24  # a flat block
    for sigma in (0.0, 3.0):
        _regions_close(maps, (0.9, 0.5, 0.05), sigma)  # masses need not be sorted
        _regions_close(maps.astype(np.float16), (0.5, 0.9), sigma)


def test_regions_the_numpy_way_where_the_library_cannot_take_them() -> None:
    """float64 maps and more than 8 masses go to the references (the library takes float32)."""
    maps = synthetic_probmaps(2, seed=1).astype(np.float64)
    ref = credible_regions(maps, (0.5, 0.9))
    got = calibrated_regions(maps, (0.5, 0.9), 0.0)
    np.testing.assert_array_equal(got.n_pixels, ref.n_pixels)
    many = tuple(np.linspace(0.1, 0.9, 9))
    np.testing.assert_array_equal(
        calibrated_regions(maps.astype(np.float32), many, 0.0).n_pixels,
        credible_regions(maps.astype(np.float32), many).n_pixels,
    )
    with pytest.raises(ValueError, match=r"masses must lie in \(0, 1\]"):
        calibrated_regions(maps.astype(np.float32), (0.5, 1.5), 2.0)


def test_switched_off_it_says_so_and_the_pipeline_decodes_the_same(tmp_path: Path) -> None:
    code = (
        "from runtime.heads import native, decode; from measure.workload import synthetic_probmaps; "
        "import numpy as np, sys; m = synthetic_probmaps(3, seed=2); kp, sc = decode.decode_probmaps(m); "
        "np.save(sys.argv[1], kp); print(native.status())"
    )
    env = {**os.environ, native.ENV: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "kp.npy")],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"numpy references ({native.ENV}=0)"
    np.testing.assert_array_equal(
        np.load(tmp_path / "kp.npy"), decode_probmaps(synthetic_probmaps(3, seed=2))[0]
    )


def test_a_library_built_from_other_source_is_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    lib = tmp_path / "_rowmath_stale.so"
    cmd = ["g++", "-O1", "-std=c++17", "-shared", "-fPIC", '-DDPN_SOURCE_DIGEST="0123456789abcdef"',
           str(ROOT / "runtime/heads/rowmath.cpp"), "-o", str(lib)]  # fmt: skip
    subprocess.run(cmd, check=True)
    got, why = native.open_library(lib, ROOT / "runtime/heads/rowmath.cpp")
    assert got is None and why == (
        "numpy references (_rowmath_stale.so was built from another rowmath.cpp: "
        "rebuild it with pip install -e . or pip install .)"
    )
    fresh, why = native.open_library(lib, None)  # no source beside it (nothing to compare): taken
    assert fresh is not None and why == "native (_rowmath_stale.so)"
    bad, why = native.open_library(tmp_path / "missing.so", None)
    assert bad is None and why.startswith("numpy references (missing.so did not load:")


def test_the_gates_yardstick_is_built_with_the_flags_pip_builds_with() -> None:
    """bench/native_frozen.py compiles the frozen copy itself; its flags must be setup.py's, or
    decode_over_frozen compares two builds (Python's -fwrapv made the runtime's copy 8 % slower)."""
    import ast

    from bench.native_frozen import FLAGS

    tree = ast.parse((ROOT / "setup.py").read_text())
    flags = next(
        n.value.orelse
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "FLAGS"
    )
    assert tuple(ast.literal_eval(flags)) == FLAGS
