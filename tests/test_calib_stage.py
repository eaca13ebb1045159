"""The calibration stage end to end: variants on disk and in the manifest, report, presence,
and the manifest that ``python -m build.engines`` writes (routing band included)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from calib.presence import T_BOUNDS
from calib.quantize import check_trt_qdq
from calib.stage import add_calib_arguments, default_precision, run_calibration
from runtime.artifacts.manifest import load_manifest, model_file, save_manifest
from runtime.pose.routing import fit_thresholds


def _tiny_artifacts(out: Path, coco_mini: Path):
    """Router + fixture-s (heatmap) + fixture-l (probmap, presence) through the real export
    and routing code, random weights: seconds instead of the minutes of the paper nets."""
    from build.artifacts import export_all, new_manifest, weights_summary
    from build.configs import NetChoice, PipelineConfig
    from build.engines import _routing_stage
    from calib.data import load_calib

    cfg = PipelineConfig("tiny-test", NetChoice("fixture-s"), NetChoice("fixture-l", "probmap"))
    manifest = new_manifest(cfg, "orin")
    manifest["models"], _ = export_all(cfg, out, {}, seed=0, simplify=True)
    manifest["weights"] = weights_summary(manifest["models"])
    calib = load_calib(coco_mini, max_crops=16)
    _routing_stage(out, manifest, calib, 0.1, 50.0)
    return manifest, calib


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_calib_arguments(p)
    ns = p.parse_args([])
    for k, v in {"target": "orin", "seed": 0, **kw}.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture(scope="module")
def int8_artifacts(tmp_path_factory, coco_mini):
    out = tmp_path_factory.mktemp("tiny-int8")
    manifest, calib = _tiny_artifacts(out, coco_mini)
    run_calibration(
        out,
        manifest,
        calib,
        _args(precision="int8", calib_method="minmax", calib_max_crops=8, calib_data=coco_mini),
    )
    save_manifest(out, manifest)
    return out


def test_int8_variants_written_hashed_and_loadable(int8_artifacts):
    m = load_manifest(int8_artifacts)
    for role in ("router", "small", "large"):
        for v in ("int8_trt", "int8_cpu"):
            entry = m["models"][role]["variants"][v]
            path = model_file(int8_artifacts, m, role, v)
            assert path.name == f"{role}.{v}.onnx" and path.parent == int8_artifacts
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
            assert entry["method"] == "minmax" and entry["n_calib_crops"] == 8
        assert check_trt_qdq(onnx.load(str(model_file(int8_artifacts, m, role, "int8_trt")))) == []


def test_report_and_calibration_block(int8_artifacts):
    m = load_manifest(int8_artifacts)
    c = m["calibration"]
    assert c["precision"] == "int8" and c["method"] == "minmax" and c["n_crops"] == 8
    rep = c["report"]
    assert rep["n_crops"] == 16 and "RANDOM WEIGHTS" in rep["note"]
    assert set(rep["nets"]) == {"router", "small", "large"}
    assert 0 <= rep["nets"]["router"]["int8_cpu"]["route_agreement"] <= 1
    for role in ("small", "large"):
        for v in ("int8_trt", "int8_cpu"):
            r = rep["nets"][role][v]
            assert r["finite"] and r["mean_disp_px"] >= 0 and 0 < r["mean_oks"] <= 1
    assert "presence_agreement" in rep["nets"]["large"]["int8_trt"]


def test_presence_fitted_on_the_probmap_net(int8_artifacts):
    p = load_manifest(int8_artifacts)["presence"]
    assert p["fitted"] and set(p["per_role"]) == {"large"}
    assert T_BOUNDS[0] <= p["temperature"] <= T_BOUNDS[1]
    assert p["ece_after"] <= p["ece_before"] + 1e-9  # NLL-optimal T rarely worsens ECE on its own data
    assert 0.05 <= p["threshold"] <= 0.95


def test_runtime_runs_the_cpu_variant(int8_artifacts, coco_mini):
    import cv2

    from runtime.pose.pipeline import load_pipeline

    img = cv2.imread(str(sorted(coco_mini.glob("*.jpg"))[0]))
    boxes = np.array([[50, 40, 120, 260], [200, 60, 100, 220]], np.float32)
    with load_pipeline(int8_artifacts, backend="ort", precision="int8_cpu", policy="large") as pipe:
        res = pipe(img, boxes)
    assert np.isfinite(res.keypoints).all() and (res.route == 1).all()
    assert ((res.presence >= 0) & (res.presence <= 1)).all()


@pytest.mark.slow  # three pipelines over coco-mini's 118 boxes: ~1 min on 2 shared cores
def test_labelled_calibration_set_puts_ap_per_precision_in_the_report(int8_artifacts, tmp_path, coco_mini):
    """coco-mini is labelled: the report gains AP/AR of small, large, dyn per precision on it."""
    import shutil

    from calib.data import load_calib
    from calib.stage import refresh_report

    out = tmp_path / "a"
    shutil.copytree(int8_artifacts, out)
    m = load_manifest(out)
    rep = refresh_report(out, m, load_calib(coco_mini, max_crops=16), ["int8_cpu", "int8_trt"], coco_mini)
    rows = {(r["policy"], r["precision"]): r for r in rep["labelled"]["rows"]}
    assert set(rows) == {(p, q) for p in ("small", "large", "dyn") for q in ("fp32", "int8_cpu", "int8_trt")}
    assert rep["labelled"]["n_crops"] == 118 and m["calibration"]["report"] is rep
    assert rows["dyn", "fp32"]["route_agreement"] == 1.0
    assert all(0 <= r["AP"] <= 1 for r in rows.values())


def test_fp16_stage(tmp_path, coco_mini):
    manifest, calib = _tiny_artifacts(tmp_path, coco_mini)
    run_calibration(tmp_path, manifest, calib, _args(precision="fp16", calib_data=coco_mini))
    for role in ("router", "small", "large"):
        path = tmp_path / manifest["models"][role]["variants"]["fp16"]["onnx"]
        assert path.is_file()
    rep = manifest["calibration"]["report"]["nets"]
    assert rep["large"]["fp16"]["mean_oks"] > 0.9 and rep["small"]["fp16"]["mean_oks"] > 0.9
    # a random router puts every score within ~1e-3 of 0.5, so fp16 noise can flip routes:
    # the number is reported, not assumed (the ORT backend keeps the router fp32 by default)
    assert 0 <= rep["router"]["fp16"]["route_agreement"] <= 1
    assert rep["router"]["fp16"]["max_abs_err"]["score"] < 1e-2
    json.dumps(manifest)


def test_default_precision_and_flags():
    assert default_precision("cpu") == "fp32" and default_precision("orin") == "int8"
    ns = _args()
    assert ns.precision is None and ns.calib_method == "entropy" and ns.calib_max_crops == 64
    with pytest.raises(SystemExit):
        p = argparse.ArgumentParser()
        add_calib_arguments(p)
        p.parse_args(["--calib-method", "kl"])


def test_build_engines_manifest_has_band_and_calibration(cpu_artifacts):
    """What the CLI wrote: k1/k2/fraction reproduce from the router's own scores."""
    from calib.data import load_calib
    from runtime.backends.ort_session import open_session

    m = load_manifest(cpu_artifacts)
    r = m["routing"]
    assert {"k1", "k2", "large_fraction", "theta", "p", "n_calib"} <= set(r)
    calib = load_calib(None)
    sess = open_session(model_file(cpu_artifacts, m, "router"))
    band = fit_thresholds(sess.run(["score"], {"input": calib.crops})[0], r["theta"], r["p"])
    assert (band.k1, band.k2, band.large_fraction) == pytest.approx((r["k1"], r["k2"], r["large_fraction"]))
    assert r["n_calib"] == len(calib)
    assert m["calibration"]["precision"] == "fp32" and m["calibration"]["report"] == {}
    assert {"temperature", "threshold"} <= set(m["presence"])
