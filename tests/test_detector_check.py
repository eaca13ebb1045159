"""The detector is checked before the pose export (build.detector_check): bad detector ONNX files,
made here with onnx.helper (tiny: a strided conv to a [N, F, A] YOLO-shaped output), and bad
``--det-*`` flags are refused by the real ``build.engines`` boundary in one line, exit 2, within
seconds: the build (its staging folder, the ~40 s pose export) has not started."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from build.engines import cli as engines_cli

REPO = Path(__file__).resolve().parents[1]
CONFIG = "fixture-dyn"
SIZE = 64  # --det-size of the tiny detectors: 8x8 candidates at stride 8


def tiny_detector(
    path: Path,
    *,
    channels: int = 3,
    in_type: int = TensorProto.FLOAT,
    in_shape: list | None = None,
    out_shape: list | None = None,
    post: str = "sigmoid",
    kpt: tuple[int, int] | None = None,
    batch1_reshape: bool = False,
    stride: int = 32,
    extra_input: bool = False,
    int_output: bool = False,
) -> Path:
    """A YOLOv8-style detector: Conv(k=8, s=8) -> Reshape [N, F, A] -> ``post`` -> output0.

    ``post``: ``sigmoid`` (probabilities: valid), ``logits`` (none), ``x10`` (sigmoid * 10),
    ``nan`` (sigmoid * NaN), ``vis10`` (keypoint visibilities * 10)."""
    feats = 4 + 1 + (kpt[0] * kpt[1] if kpt else 0)
    w = np.random.default_rng(0).normal(0, 0.05, (feats, channels, 8, 8)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([1 if batch1_reshape else 0, feats, -1], np.int64), "shape"),
    ]
    nodes, x = [], "images"
    if in_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["images"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["conv"], strides=[8, 8]),
        helper.make_node("Reshape", ["conv", "shape"], ["raw"]),
    ]
    y = "raw"
    if post != "logits":
        nodes.append(helper.make_node("Sigmoid", ["raw"], ["prob"]))
        y = "prob"
    if post in ("x10", "nan", "vis10"):
        k = np.array(10 if post == "x10" else np.nan, np.float32)
        if post == "vis10":  # only the keypoints' visibility (every third value after box + class)
            k = np.ones((feats, 1), np.float32)
            k[7::3] = 10
        inits.append(numpy_helper.from_array(k, "k"))
        nodes.append(helper.make_node("Mul", [y, "k"], ["scaled"]))
        y = "scaled"
    out_type = TensorProto.FLOAT
    if int_output:
        nodes.append(
            helper.make_node(
                "Cast",
                [
                    y,
                ],
                ["as_int"],
                to=TensorProto.INT64,
            )
        )
        y, out_type = "as_int", TensorProto.INT64
    nodes.append(helper.make_node("Identity", [y], ["output0"]))
    inputs = [helper.make_tensor_value_info("images", in_type, in_shape or ["N", channels, "H", "W"])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        inputs,
        [helper.make_tensor_value_info("output0", out_type, out_shape or ["N", feats, "A"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"task": "pose" if kpt else "detect", "names": "{0: 'person'}", "stride": str(stride)}
    if kpt:
        meta["kpt_shape"] = str(list(kpt))
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    return path


# name -> (tiny_detector options, extra flags, what the one error line must say)
BAD_DETECTORS = {
    "grey-1-channel": (dict(channels=1), [], "has 1 channels on axis 1"),
    "nhwc-input": (dict(in_shape=["N", SIZE, SIZE, 3]), [], "channels on axis 1"),
    "int64-input": (dict(in_type=TensorProto.INT64), [], "input images is int64"),
    "two-inputs": (dict(extra_input=True), [], "has 2 inputs"),
    "rectangular-fixed-input": (dict(in_shape=["N", 3, SIZE, 96]), [], "fixed at 64x96"),
    "fixed-size-differs": (dict(in_shape=["N", 3, 96, 96]), [], "--det-size 96"),
    "fixed-batch-1-max-batch-4": (
        dict(in_shape=[1, 3, "H", "W"]),
        ["--det-max-batch", "4"],
        "--det-max-batch 1",
    ),
    "fixed-batch-2": (dict(in_shape=[2, 3, "H", "W"]), [], "export it with a dynamic batch"),
    "declared-output-wrong": (
        dict(out_shape=["N", 5, 100]),
        [],
        "declared ['N', 5, 100] but gives [2, 5, 64]",
    ),
    "batch-1-reshape-in-dynamic-graph": (dict(batch1_reshape=True), [], "on a batch of 2"),
    "nan-output": (dict(post="nan"), [], "NaN/inf values"),
    "scores-over-1": (dict(post="x10"), [], "class scores outside [0, 1]"),
    "logits": (dict(post="logits"), [], "not logits"),
    "keypoint-visibility-over-1": (
        dict(post="vis10", kpt=(2, 3)),
        [],
        "keypoint visibilities outside [0, 1]",
    ),
    "int-output": (dict(int_output=True), [], "output output0 is int64"),
    "stride-64-size-not-multiple": (dict(stride=64), ["--det-size", "96"], "stride 64"),
}


def refused(argv: list[str], out: Path, capfd, needle: str) -> str:
    """The real CLI boundary: exit 2, one error line with ``needle``, no traceback, and refused before
    the build started: no staging folder was made under --out (so no pose ONNX exported into it) and
    the build's first stage (reading --calib-data, then its progress bar) never printed."""
    rc = engines_cli(["--config", CONFIG, "--target", "cpu", "--out", str(out), *argv])
    err = capfd.readouterr().err
    assert rc == 2, f"exit {rc}; stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and needle in lines[0], (needle, lines)
    assert not out.exists(), f"refused after the build had started: {sorted(out.rglob('*'))[:5]}"
    assert "calibration data:" not in err and "build: " not in err, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_DETECTORS))
def test_bad_detector_is_refused_before_the_pose_export(
    case: str, tmp_path: Path, coco_mini: Path, capfd
) -> None:
    opts, flags, needle = BAD_DETECTORS[case]
    onnx_path = tiny_detector(tmp_path / f"{case}.onnx", **opts)
    argv = [
        "--detector",
        str(onnx_path),
        "--det-size",
        str(SIZE),
        "--det-max-batch",
        "2",
        "--calib-data",
        str(coco_mini),
        *flags,
    ]
    line = refused(argv, tmp_path / "out", capfd, needle)
    assert f"{case}.onnx" in line, line  # the line names the file


FLAG_CASES = {
    "det-size-over-4096": (["--det-size", "8192"], "--det-size"),
    "det-size-just-over": (["--det-size", "4128"], "--det-size"),
    "det-size-not-multiple-of-32": (["--det-size", "100"], "multiple of 32"),
    "det-size-zero": (["--det-size", "0"], "--det-size"),
    "det-calib-data-missing": (["--det-calib-data", "/nope"], "--det-calib-data"),
    "detector-is-a-folder": (["--detector", "{empty}"], "is a folder"),
    "det-calib-data-empty-folder": (["--det-calib-data", "{empty}"], "--det-calib-data"),
    "det-flag-without-detector": (["--det-size", "480", "--no-detector"], "no detector"),
    "det-calib-frames-without-detector": (["--det-calib-frames", "8", "--no-detector"], "--det-calib-frames"),
    "int8-flag-with-fp32-detector": (["--det-precision", "fp32", "--det-drift-px", "2"], "--det-drift-px"),
    "det-class-out-of-range": (["--det-class", "5"], "--det-class"),
    "det-layout-yolov5-on-yolov8": (["--det-layout", "yolov5"], "--detector"),
    "det-layout-yolov8-on-a-pose-model": (["--det-layout", "yolov8"], "check --det-layout"),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_det_flag_is_refused_before_the_pose_export(
    case: str, tmp_path: Path, shared_data: Path, coco_mini: Path, capfd
) -> None:
    """With the real YOLO11n-pose (AGPL test data, read in place): every --det-* mistake is refused
    in one line before anything is exported."""
    flags, needle = FLAG_CASES[case]
    (tmp_path / "empty").mkdir()
    flags = [f.format(empty=tmp_path / "empty") for f in flags]
    # --detector none: the default config (fixture-dyn) names its own detector
    yolo = str(shared_data / "models" / "yolo11n-pose.onnx")
    detector = ["--detector", "none" if "--no-detector" in flags else yolo]
    flags = [f for f in flags if f != "--no-detector"]
    refused([*detector, "--calib-data", str(coco_mini), *flags], tmp_path / "out", capfd, needle)


def _args(**kw) -> argparse.Namespace:
    base = dict(
        det_size=SIZE,
        det_layout=None,
        det_class=0,
        det_max_batch=2,
        det_calib_data=None,
        calib_data=None,
        det_precision="all",
    )
    return argparse.Namespace(**{**base, **kw})


def test_valid_detectors_pass_on_a_calibration_frame_or_a_generated_one(
    tmp_path: Path, shared_data: Path, coco_mini: Path
) -> None:
    from build.detector_check import check_detector

    ok = check_detector(tiny_detector(tmp_path / "ok.onnx"), _args(), coco_mini)
    assert ok.ran == {"frame": str(coco_mini), "batch": 2} and ok.layout.features == 5
    pose = check_detector(
        tiny_detector(tmp_path / "pose.onnx", kpt=(2, 3)), _args(det_max_batch=1), coco_mini
    )
    assert pose.ran["batch"] == 1 and pose.layout.kpt_shape == (2, 3)
    static = check_detector(
        tiny_detector(tmp_path / "b1.onnx", in_shape=[1, 3, SIZE, SIZE]), _args(det_max_batch=1), coco_mini
    )  # a static batch-1 export, --det-max-batch 1
    assert static.ran["batch"] == 1
    # fp32 only: no calibration data is needed, so an unreadable source gives a generated frame
    gen = check_detector(tmp_path / "ok.onnx", _args(det_precision="fp32", calib_data=tmp_path), tmp_path)
    assert gen.ran["frame"] == "a generated frame"
    yolo = check_detector(
        shared_data / "models" / "yolo11n-pose.onnx", _args(det_size=640, det_max_batch=4), coco_mini
    )
    assert yolo.ran["batch"] == 2 and yolo.layout.kpt_shape == (17, 3)


@pytest.mark.slow
def test_bad_detector_subprocess_fails_in_seconds(tmp_path: Path, coco_mini: Path) -> None:
    """The real command: a NaN detector is refused before the pose export, nothing left under --out."""
    bad = tiny_detector(tmp_path / "nan.onnx", post="nan")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "build.engines",
            "--config",
            CONFIG,
            "--out",
            str(out),
            "--calib-data",
            str(coco_mini),
            "--detector",
            str(bad),
            "--det-size",
            str(SIZE),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: nan.onnx: output output0 has"), r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    assert time.perf_counter() - t < 60
