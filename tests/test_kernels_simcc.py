"""The SimCC decode kernel's own source (kernels/simcc_rowmath.cuh), built for the host, against
runtime/heads/simcc.py ``decode_simcc`` (itself checked against a loop reference in
tests/test_simcc_decode.py).

kernels/host_api.cpp runs ``simcc_decode_row`` - the code the CUDA kernel executes - on a
HostBlock that plays the thread block. The argmax with numpy's tie rule is exact in any
reduction order and the only arithmetic is one correctly rounded division, so the contract is
bitwise equality, fp16 input included (a score of zero may differ in sign: numpy's max returns
either zero of a row whose maximum ties at +0/-0, the kernel the first).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kernels.host_build import HostKernels
from runtime.heads.simcc import SPLIT_RATIO, decode_simcc

F32 = np.float32


@pytest.fixture(scope="module")
def hk() -> HostKernels:
    return HostKernels()


def _peaked_rows(rng: np.random.Generator, n: int, k: int, bins: int) -> np.ndarray:
    """Rows shaped like a trained RTMCC head's: a Gaussian bump over noise, a quarter of them
    shifted below zero (absent keypoints)."""
    centre = rng.uniform(0, bins, size=(n, k, 1))
    height = rng.uniform(0.2, 1.5, size=(n, k, 1))
    shift = np.where(rng.uniform(size=(n, k, 1)) < 0.25, -2.0, 0.0)
    i = np.arange(bins)
    bump = height * np.exp(-0.5 * ((i - centre) / rng.uniform(2, 12, size=(n, k, 1))) ** 2)
    return (bump + shift + rng.normal(scale=0.05, size=(n, k, bins))).astype(F32)


def _assert_bitwise(got, want) -> None:
    np.testing.assert_array_equal(got[0], want[0])  # NaN where NaN
    np.testing.assert_array_equal(got[1], want[1])  # -0.0 == 0.0: numpy's max picks either zero
    nonzero = want[1] != 0
    assert np.array_equal(np.signbit(got[1][nonzero]), np.signbit(want[1][nonzero]))


@pytest.mark.parametrize("hw", [(256, 192), (384, 288)])
def test_kernel_source_bitwise_equal_to_decode_simcc(hk, hw):
    rng = np.random.default_rng(hw[0])
    h, w = hw
    x = _peaked_rows(rng, 6, 17, int(w * SPLIT_RATIO))
    y = _peaked_rows(rng, 6, 17, int(h * SPLIT_RATIO))
    got = hk.simcc_decode(x, y)
    want = decode_simcc(x, y)
    _assert_bitwise(got, want)
    assert (want[1] <= 0).any() and (want[1] > 0).any(), "both score branches must be exercised"
    assert got[0].max() > 0.9 * w  # input pixels, not bins
    assert (got[0][want[1] <= 0] == -1 / SPLIT_RATIO).all()


def test_fp16_input_bitwise_equal_to_decode_simcc_of_the_upcast(hk):
    rng = np.random.default_rng(7)
    x = _peaked_rows(rng, 4, 17, 384).astype(np.float16)
    y = _peaked_rows(rng, 4, 17, 512).astype(np.float16)
    x[0, 0, 3] = x[0, 0, 9] = np.float16(60000)  # fp16 ties: first bin
    got = hk.simcc_decode(x, y)
    _assert_bitwise(got, decode_simcc(x.astype(F32), y.astype(F32)))
    assert got[0][0, 0, 0] == 1.5


def test_ties_absent_keypoints_and_invalid_rows(hk):
    x = np.zeros((3, 17, 384), F32)
    y = np.zeros((3, 17, 512), F32)
    x[0, :, 10] = x[0, :, 200] = 1.0  # tie on x: the first bin
    y[0, :, 33] = 2.0
    x[1, 0] = -1.0  # every bin tied and negative: location -1 -> -0.5
    x[1, 1, 5] = 3.0  # x confident, y all zero: score 0 is "not above zero"
    x[2, 0, 0] = np.nan
    y[2, 1, 511] = np.inf
    y[2, 2, :] = -np.inf
    x[2, 3, 7] = -np.inf  # one -inf bin makes the row invalid, as np.isfinite says
    got = hk.simcc_decode(x, y)
    want = decode_simcc(x, y)
    _assert_bitwise(got, want)
    np.testing.assert_array_equal(got[0][0, 0], [5.0, 16.5])
    np.testing.assert_array_equal(got[0][1, 0], [-0.5, -0.5])
    assert got[1][1, 1] == 0 and (got[0][1, 1] == -0.5).all()
    for k in range(4):
        assert np.isnan(got[0][2, k]).all() and got[1][2, k] == 0


@pytest.mark.parametrize("split", [1.0, 2.0, 3.0, 2.5])
def test_any_split_ratio(hk, split):
    rng = np.random.default_rng(int(split * 10))
    x = _peaked_rows(rng, 2, 17, 301)
    y = _peaked_rows(rng, 2, 17, 403)
    _assert_bitwise(hk.simcc_decode(x, y, split), decode_simcc(x, y, split))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda k: st.tuples(
            arrays(
                F32,
                st.tuples(st.just(2), st.just(k), st.integers(1, 300)),
                elements=st.floats(-4, 4, width=32),
            ),
            arrays(
                F32,
                st.tuples(st.just(2), st.just(k), st.integers(1, 300)),
                elements=st.floats(-4, 4, width=32),
            ),
        )
    ),
    st.sampled_from([1.0, 2.0, 3.0]),
)
def test_kernel_source_equals_decode_simcc_on_any_rows(xy, split):
    x, y = xy
    _assert_bitwise(HostKernels().simcc_decode(x, y, split), decode_simcc(x, y, split))


def test_parameter_errors_are_clear(hk):
    x, y = np.zeros((1, 17, 8), F32), np.zeros((1, 17, 8), F32)
    with pytest.raises(ValueError, match="split ratio"):
        hk.simcc_decode(x, y, 0.0)
    with pytest.raises(ValueError, match="split ratio"):
        hk.simcc_decode(x, y, float("nan"))
    with pytest.raises(ValueError, match="must share N, K and dtype"):
        hk.simcc_decode(x, y.astype(np.float16))
    with pytest.raises(ValueError, match="row length"):
        hk.simcc_decode(np.zeros((1, 17, 0), F32), y)
