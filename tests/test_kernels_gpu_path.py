"""The GPU path's new kernel sources run on the CPU: the crop kernel against
runtime.pose.preprocess.make_crops, and the decode's credible regions against
runtime.heads.credible (the numpy definition).

kernels/host_api.cpp runs dynpose_crop.cuh and dynpose_regions.cuh - the code the CUDA
kernels execute - so these compare the kernels' own source with the references.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kernels.host_build import HostKernels
from runtime.heads import decode as D
from runtime.heads.credible import blur_maps, credible_regions
from runtime.pose.preprocess import MEAN, STD, boxes_to_center_scale, crop_affines, make_crops
from tests import test_kernels

F32 = np.float32
real_maps = test_kernels.real_maps  # the real nets' maps and logits of coco-mini, one fixture for both files


@pytest.fixture(scope="module")
def hk() -> HostKernels:
    return HostKernels()


def _people(coco_mini: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, person boxes) of every coco-mini photo, plus boxes that leave the frame."""
    ann = json.loads((coco_mini / "person_keypoints.json").read_text())
    out = []
    for im in ann["images"]:
        frame = cv2.imread(str(coco_mini / im["file_name"]))
        boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == im["id"]]
        h, w = frame.shape[:2]
        boxes += [[-40.5, -30.25, 120.0, 200.0], [w - 50.0, h - 60.0, 90.0, 80.0], [10.0, 10.0, 3.0, 4.0]]
        out.append((frame, np.asarray(boxes, F32)))
    return out


def test_crops_equal_make_crops_on_real_photos(hk, coco_mini):
    """OpenCV's fixed-point bilinear replayed: the crop equals warpAffine's, so the tensor
    equals make_crops bit for bit (max abs error 0 in normalised units)."""
    worst, n = 0.0, 0
    for frame, boxes in _people(coco_mini):
        c, s = boxes_to_center_scale(boxes)
        ref = make_crops(frame, c, s)
        got = hk.crops(frame, crop_affines(c, s), ref.shape[2:], MEAN, STD)
        worst = max(worst, float(np.abs(got - ref).max()))
        n += len(boxes)
    assert n >= 12
    assert worst == 0.0, f"crop kernel differs from make_crops by {worst}"


def test_crops_at_any_input_size_and_fp16(hk, coco_mini):
    """384x288 (RTMPose-m/l) crops: the same affine at another size equals cv2.warpAffine
    + the same normalisation; fp16 output is the fp32 tensor rounded once."""
    frame, boxes = _people(coco_mini)[0]
    c, s = boxes_to_center_scale(boxes, input_hw=(384, 288))
    mats = crop_affines(c, s, (384, 288))
    got = hk.crops(frame, mats, (384, 288), MEAN, STD)
    for i, m in enumerate(mats):
        crop = cv2.warpAffine(frame, m, (288, 384), flags=cv2.INTER_LINEAR, borderValue=0)
        ref = (crop.astype(F32) * (1.0 / STD)[::-1] + (-MEAN / STD)[::-1])[:, :, ::-1].transpose(2, 0, 1)
        np.testing.assert_array_equal(got[i], ref)
    half = hk.crops(frame, mats, (384, 288), MEAN, STD, half=True)
    np.testing.assert_array_equal(half, got.astype(np.float16))


def _angle_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| for axis angles, which are equal modulo pi (a round ellipse's +-pi/2 is one axis)."""
    d = np.abs((np.asarray(a, np.float64) - b + np.pi / 2) % np.pi - np.pi / 2)
    return np.nan_to_num(d, nan=0.0)


def _check_regions(pix, ell, ref, ell_atol: float) -> None:
    np.testing.assert_array_equal(np.moveaxis(pix, 2, 0), ref.n_pixels)
    got = np.moveaxis(ell, 2, 0).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.ellipse))
    np.testing.assert_allclose(got[..., :4], ref.ellipse[..., :4], atol=ell_atol, rtol=0, equal_nan=True)
    assert _angle_gap(got[..., 4], ref.ellipse[..., 4]).max() <= ell_atol


def test_regions_equal_numpy_on_real_maps(hk, real_maps):
    """Fused sparsemax + regions on real logits: pixel counts exact, ellipses within float32
    rounding (1e-4 heatmap px) of credible_regions on the kernel's own sparsemax."""
    logits = real_maps["logits"]
    n = logits.shape[0]
    qs = (0.5, 0.9, 0.3)
    kp, sc, pix, ell = hk.decode_regions(logits, qs, D.COCO_SIGMAS, normalize=True)
    pm = hk.sparsemax(logits.reshape(n * 17, -1)).reshape(logits.shape)
    _check_regions(pix, ell, credible_regions(pm, qs), 1e-4)
    ref_kp, ref_sc = hk.decode(logits, "probmap", D.COCO_SIGMAS, normalize=True)
    np.testing.assert_array_equal(kp, ref_kp)  # the regions leave the keypoint decode untouched
    np.testing.assert_array_equal(sc, ref_sc)


def test_regions_equal_numpy_on_random_and_flat_maps(hk):
    """Wide, spiky, flat (every pixel tied) and single-pixel maps, masses up to 1."""
    rng = np.random.default_rng(7)
    z = (rng.normal(size=(4, 17, 64, 48)) * rng.uniform(0.3, 8.0, size=(4, 17, 1, 1))).astype(F32)
    pm = hk.sparsemax(z.reshape(68, -1)).reshape(z.shape)
    pm[3, 0] = 1.0 / (64 * 48)  # flat: ties everywhere
    pm[3, 1] = 0.0
    pm[3, 1, 5, 7] = 1.0  # one pixel
    qs = (0.5, 0.9, 1.0)
    _, _, pix, ell = hk.decode_regions(pm, qs, D.COCO_SIGMAS)
    ref = credible_regions(pm, qs)
    _check_regions(pix, ell, ref, 1e-4)
    assert pix[3, 0].tolist() == [1536.0, 2765.0, 3072.0]
    assert pix[3, 1].tolist() == [1.0, 1.0, 1.0]


def test_regions_of_invalid_and_empty_maps(hk):
    """A map the decode rejects (NaN/inf) has no region: count 0, NaN ellipse, as an all-zero
    map has in credible.py."""
    pm = np.zeros((1, 17, 64, 48), F32)
    pm[0, :, 30, 20] = 1.0
    pm[0, 2, 0, 0] = np.nan
    pm[0, 3] = 0.0
    _, sc, pix, ell = hk.decode_regions(pm, (0.5,), D.COCO_SIGMAS)
    for k in (2, 3):
        assert pix[0, k, 0] == 0 and np.isnan(ell[0, k, 0]).all()
    assert sc[0, 2] == 0.0
    assert pix[0, 0, 0] == 1 and np.allclose(ell[0, 0, 0], [20, 30, 2 / np.sqrt(12), 2 / np.sqrt(12), 0])


def test_regions_with_calibration_blur(hk, real_maps):
    """With the coverage map's blur (sigma in heatmap px; the fixture calibrates 8) the regions
    are taken on the blurred map, as CoverageMap.prepare does. The blur is float32 on the device,
    float64 in numpy; on the real nets' maps that changes nothing: counts identical, ellipses
    within float32 rounding. (Maps with a 2-3 pixel support blur into mirror-symmetric values
    whose ties float32 and float64 split differently at the last pixel taken; the count holds,
    the tie-inclusive ellipse can move: docs/plugin.md.)"""
    logits = real_maps["logits"]
    n = logits.shape[0]
    pm = hk.sparsemax(logits.reshape(n * 17, -1)).reshape(logits.shape)
    qs = (0.5, 0.9)
    unblurred = hk.decode_regions(pm, qs, D.COCO_SIGMAS)[2]
    for sigma in (2.0, 8.0):
        _, _, pix, ell = hk.decode_regions(pm, qs, D.COCO_SIGMAS, blur_sigma=sigma)
        _check_regions(pix, ell, credible_regions(blur_maps(pm, sigma), qs), 1e-4)
        assert (pix > unblurred).mean() > 0.5  # the blur widens the regions: it was applied


def test_region_parameter_errors(hk):
    maps = np.full((1, 17, 64, 48), 1 / 3072, F32)
    with pytest.raises(ValueError, match="over 4 masses"):
        hk.decode_regions(maps, (0.1, 0.2, 0.3, 0.4, 0.5))
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        hk.decode_regions(maps, (0.0,))
    with pytest.raises(ValueError, match="over 256 with a blur"):
        hk.decode_regions(np.full((1, 1, 300, 2), 1 / 600, F32), (0.5,), sigmas=[0.05], blur_sigma=1.0)


def _plugin_manifest(masses=(0.5, 0.9), regions_for=None) -> dict:
    """A manifest with a fitted coverage map (with a blur) and a large net whose engine was built
    from the fused-decode variant carrying regions for ``regions_for`` (default: ``masses``)."""
    from build.plugin_nodes import region_spec

    cov = {"nominal": [0.2, 0.4, 0.6, 0.8, 1.0], "coverage": [0.1, 0.3, 0.5, 0.7, 1.0], "sigma": 1.5}
    manifest = {"credible": {"fitted": True, "coverage_map": cov}}
    spec = region_spec(manifest, regions_for or masses)
    manifest["models"] = {
        "large": {
            "engine": {"onnx": "large.plugin.onnx"},
            "variants": {"plugin": {"onnx": "large.plugin.onnx", "regions": spec.to_json()}},
        }
    }
    return manifest


def test_probfields_reads_the_plugin_regions_when_the_maps_stay_on_the_device(hk, real_maps):
    """The fused decode's region outputs (here from the kernel's source on the CPU) give the same
    image-space areas and ellipses as the host path on the maps, calibration included."""
    from build.plugin_nodes import region_spec
    from runtime.heads.probfields import ProbFieldsDecoder
    from runtime.heads.registry import head_spec

    logits = real_maps["logits"]
    n = logits.shape[0]
    pm = hk.sparsemax(logits.reshape(n * 17, -1)).reshape(logits.shape)
    manifest = _plugin_manifest()
    spec = region_spec(manifest)
    kp, sc, pix, ell = hk.decode_regions(pm, spec.nominal, D.COCO_SIGMAS, blur_sigma=spec.sigma)
    boxes = np.array([[40.0 + 7 * i, 30.0, 120.0 + i, 260.0] for i in range(n)], F32)
    centers, scales = boxes_to_center_scale(boxes)
    presence, rows, probmap = np.ones((n, 17), F32), np.arange(n), head_spec("probmap")

    dec = ProbFieldsDecoder(manifest)
    assert dec.device_regions
    host, device = dec.new(n), dec.new(n)
    dec.fill(host, rows, probmap, {"probmaps": pm}, presence, centers, scales)
    fused = {"keypoints": kp, "keypoint_scores": sc, "region_pixels": pix, "region_ellipses": ell}
    dec.fill(device, rows, probmap, fused, presence, centers, scales, (64, 48))
    assert device.has_regions.all()
    np.testing.assert_allclose(device.area, host.area, rtol=1e-6)  # same pixel counts
    np.testing.assert_allclose(device.ellipse[..., :4], host.ellipse[..., :4], rtol=0, atol=2e-3)  # image px
    assert _angle_gap(device.ellipse[..., 4], host.ellipse[..., 4]).max() <= 1e-4


def test_plugin_regions_for_other_masses_are_not_used(hk, real_maps, caplog):
    """An engine built for other masses (or before a recalibration) has regions that are not the
    ones asked for: no regions, and a warning that says to rebuild."""
    from runtime.heads.probfields import ProbFieldsDecoder
    from runtime.heads.registry import head_spec

    n = 2
    pix, ell = np.ones((n, 17, 2), F32), np.zeros((n, 17, 2, 5), F32)
    outs = {"keypoints": np.zeros((n, 17, 2), F32), "region_pixels": pix, "region_ellipses": ell}
    c, s = boxes_to_center_scale(np.array([[0, 0, 60, 80]] * n, F32))
    for manifest in (_plugin_manifest(regions_for=(0.5, 0.8)), {"models": {}}):
        dec = ProbFieldsDecoder(manifest)
        ex = dec.new(n)
        dec.fill(ex, np.arange(n), head_spec("probmap"), outs, np.ones((n, 17)), c, s, (64, 48))
        assert not ex.has_regions.any()
    assert "rebuild the engines" in caplog.text
