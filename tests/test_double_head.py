"""The double-heatmap head (ProbPose-s-DH equivalent): exports, runs in ONNX Runtime like torch, and
its decode (expert map inside the window, outer map outside) matches a hand-computed reference."""

from __future__ import annotations

import numpy as np
import torch

from build.export import export_onnx, parity
from build.models.double_head import OUTER_FACTOR, outer_targets
from build.train.double import build_double, fixture_state
from runtime.backends.ort_session import open_session
from runtime.heads import double_decode
from runtime.heads.double_decode import merge_double, outer_to_inner
from runtime.heads.registry import decode_outputs

H, W = 64, 48


def test_factor_and_coordinate_maps_agree():
    assert double_decode.OUTER_FACTOR == OUTER_FACTOR
    xy = np.array([[[-20.0, 70.0], [23.5, 31.5], [50.0, -3.0]]], np.float32)
    o = outer_targets(xy)
    np.testing.assert_allclose(o[0, 1], [23.5, 31.5])  # the centre stays
    np.testing.assert_allclose(o[0, 0], [23.5 - 43.5 / 2, 31.5 + 38.5 / 2])
    np.testing.assert_allclose(outer_to_inner(o, (H, W)), xy, atol=1e-5)


def test_decode_takes_outer_map_for_absent_keypoints_only():
    rng = np.random.default_rng(0)
    n, k = 2, 17
    iy, ix = rng.integers(8, H - 8, (n, k)), rng.integers(8, W - 8, (n, k))
    oy, ox = rng.integers(8, H - 8, (n, k)), rng.integers(8, W - 8, (n, k))
    inner = np.zeros((n, k, H, W), np.float32)
    outer = np.zeros((n, k, H, W), np.float32)
    r, c = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner[r, c, iy, ix] = 1.0
    outer[r, c, oy, ox] = 1.0
    presence = rng.uniform(0, 1, (n, k)).astype(np.float32)
    outs = {"probmaps": inner, "outer_probmaps": outer, "presence": presence}
    coords, scores, pres = decode_outputs("probmap", outs, 1.0, presence_threshold=0.5)
    # reference by hand: a one-hot map decodes to its pixel; outer pixels are 2 inner pixels from the centre
    ref_out = np.stack([(ox - 23.5) * 2 + 23.5, (oy - 31.5) * 2 + 31.5], -1)
    ref = np.where((presence < 0.5)[..., None], ref_out, np.stack([ix, iy], -1))
    np.testing.assert_allclose(coords, ref, atol=1e-4)
    assert (presence < 0.5).any() and (presence >= 0.5).any()
    np.testing.assert_array_equal(pres, presence)
    plain, _, _ = decode_outputs("probmap", {"probmaps": inner, "presence": presence}, 1.0)
    np.testing.assert_allclose(plain, np.stack([ix, iy], -1), atol=1e-4)


def test_double_head_exports_and_runs_in_ort_with_the_same_decode(tmp_path):
    torch.manual_seed(0)
    net = build_double(fixture_state()).eval()
    path = export_onnx(net, tmp_path / "dh.onnx", net.output_names)
    err = parity(net, path, batches=(1, 3))
    assert set(err) == {"probmaps", "presence", "visibility", "oks", "outer_probmaps"}
    assert max(err.values()) < 1e-4, err
    sess = open_session(path)
    x = np.random.default_rng(1).standard_normal((3, 3, 256, 192)).astype(np.float32)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    assert got["outer_probmaps"].shape == (3, 17, H, W)
    np.testing.assert_allclose(got["outer_probmaps"].sum((2, 3)), 1.0, atol=1e-4)
    with torch.no_grad():
        ref = dict(zip(net.output_names, (t.numpy() for t in net(torch.from_numpy(x)))))
    a = merge_double(
        *decode_outputs("probmap", {"probmaps": got["probmaps"]})[:2],
        got["outer_probmaps"],
        got["presence"],
        0.5,
    )
    b = merge_double(
        *decode_outputs("probmap", {"probmaps": ref["probmaps"]})[:2],
        ref["outer_probmaps"],
        ref["presence"],
        0.5,
    )
    np.testing.assert_allclose(a[0], b[0], atol=1e-2)


def test_outer_placed_keypoints_get_the_outer_maps_region():
    """A keypoint decoded from the outer map reports the outer map's credible region, in the same
    image coordinates as its position (outer pixel = 2x2 inner pixels); the others keep the expert's."""
    from runtime.heads.grid import heatmap_to_image
    from runtime.heads.probfields import ProbFieldsDecoder
    from runtime.heads.registry import head_spec

    n, k, h, w = 1, 17, 64, 48
    inner = np.zeros((n, k, h, w), np.float32)
    inner[:, :, 10, 12] = 1.0  # every expert map: one pixel at (12, 10)
    outer = np.zeros((n, k, h, w), np.float32)
    outer[:, :, 40, 30] = 1.0  # every outer map: one pixel at (30, 40)
    presence = np.full((n, k), 0.9, np.float32)
    presence[0, 3] = 0.1  # keypoint 3 is outside the window
    dec = ProbFieldsDecoder({"presence": {"threshold": 0.5}}, masses=(0.5, 0.9))
    ex = dec.new(n)
    centers, scales = np.array([[100.0, 200.0]]), np.array([[96.0, 128.0]])  # 2 image px per heatmap px
    dec.fill(
        ex,
        np.array([0]),
        head_spec("probmap-dh"),
        {"probmaps": inner, "outer_probmaps": outer},
        presence,
        centers,
        scales,
    )
    assert np.allclose(ex.area[0, :, 3], 4 * 4.0)  # 1 outer px = 4 inner px = 4 x (2x2) image px^2
    assert np.allclose(np.delete(ex.area[0], 3, axis=1), 4.0)
    want_out = heatmap_to_image(outer_to_inner(np.array([[[30.0, 40.0]]]), (h, w)), centers, scales)[0, 0]
    want_in = heatmap_to_image(np.array([[[12.0, 10.0]]]), centers, scales)[0, 0]
    assert np.allclose(ex.ellipse[0, :, 3, :2], want_out, atol=1e-4)
    assert np.allclose(ex.ellipse[0, :, 0, :2], want_in, atol=1e-4)
    # the position decode makes the same choice (merge_double), so region and keypoint agree
    coords, _ = merge_double(
        np.zeros((n, k, 2), np.float32), np.zeros((n, k), np.float32), outer, presence, 0.5
    )
    assert np.allclose(coords[0, 3], outer_to_inner(np.array([30.0, 40.0]), (h, w)), atol=0.5)
