"""``--detector rtmdet-nano-person``: the released checkpoint through build.zoo's download (a real
HTTP server on loopback serving a generated checkpoint in MMDet's layout), exported, checked and
built as the ``detector`` role with its FP16 / INT8 variants for the CPU target, then run by the
runtime's detector; a hash mismatch and an offline build fail in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from build import zoo
from build.detector import add_detector
from build.detector_check import early_check
from build.engines import cli, parse_args
from build.models.rtmdet import build_rtmdet
from runtime.detectors.net import NetDetector
from runtime.errors import EXIT_INPUT
from tests.test_zoo import Server, mmpose_bytes

NAME = "rtmdet-nano-person"


def _served(server: Server, monkeypatch: pytest.MonkeyPatch, data: bytes) -> zoo.ZooEntry:
    """The table's rtmdet-nano-person entry, re-pointed at a file named with ``data``'s hash
    (MMPose's naming), served by ``server``."""
    real = zoo.ZOO[NAME]
    fname = f"rtmdet_nano_8xb32-100e_coco-obj365-person-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    entry = dataclasses.replace(
        real, url=real.url.rsplit("/", 1)[0] + "/" + fname, sha256_prefix=zoo.hash_prefix(fname)
    )
    monkeypatch.setitem(zoo.ZOO, NAME, entry)
    server.files[urllib.parse.urlparse(entry.url).path] = data
    return entry


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    s = Server()
    monkeypatch.setenv(zoo.MIRROR_ENV, s.base)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    yield s
    s.stop()


def test_by_name_fetches_exports_and_builds_int8_cpu(server, monkeypatch, tmp_path, coco_mini, shared_data):
    torch.manual_seed(5)
    net = build_rtmdet("rtmdet-nano", 1)
    sd = net.state_dict()
    entry = _served(server, monkeypatch, mmpose_bytes(sd))
    args = parse_args(
        [
            "--target",
            "cpu",
            "--detector",
            NAME,
            "--det-calib-data",
            str(coco_mini),
            "--det-calib-frames",
            "4",
            "--det-calib-method",  # random weights give near-constant maps: no histogram of them
            "minmax",
        ]
    )
    det = early_check(args, SimpleNamespace(detector=None), coco_mini)
    assert det is not None and det.size == 320 and args.det_size == 320
    assert det.weights is not None and det.weights["zoo"] == NAME and det.weights["arch"] == "rtmdet-nano"
    assert det.src.parent == tmp_path / "cache" / "checkpoints" / "detectors"
    assert server.requests == [urllib.parse.urlparse(entry.url).path]

    out = tmp_path / "art"
    out.mkdir()
    manifest: dict = {"models": {}}
    e = add_detector(out, manifest, det.src, args, coco_mini, checked=det)
    assert (
        e["input_hw"] == [320, 320] and e["layout"]["family"] == "yolov8" and e["layout"]["num_classes"] == 1
    )
    assert e["weights"]["url"] == entry.url and len(e["weights"]["sha256"]) == 64
    assert e["source"]["license"] == "Apache-2.0"
    assert isinstance(e["inputs"][0]["shape"][0], str)  # dynamic batch kept
    assert set(e["variants"]) == {"fp16", "int8_cpu", "int8_trt"}
    cpu = e["variants"]["int8_cpu"]
    assert cpu["qdq"] and "fallback" in cpu  # calibrated, drift budget applied (calib.fallback)
    json.dumps(e)

    # the runtime runs the INT8 CPU variant like any detector ONNX: same letterbox, decode, NMS
    frame = cv2.imread(str(next(coco_mini.glob("*.jpg"))))
    d = NetDetector.from_onnx(out / cpu["onnx"], score_thr=0.0, threads=1)
    try:
        assert d.input_hw == (320, 320) and d.layout.family == "yolov8"
        dets = d(frame)
    finally:
        d.close()
    assert dets.invalid == 0 and len(dets.boxes) > 0 and np.isfinite(dets.boxes).all()

    # a second build reuses the cached download and export: no request, same file
    again = early_check(
        parse_args(["--detector", NAME, "--det-precision", "fp32"]), SimpleNamespace(detector=None), coco_mini
    )
    assert again is not None and again.src == det.src and len(server.requests) == 1


def _one_line(capfd) -> str:
    """The one error line (the download's progress bar may precede it; no traceback)."""
    err = [ln for ln in capfd.readouterr().err.strip().splitlines() if "B/s]" not in ln]
    assert len(err) == 1, err
    return err[0]


def test_hash_mismatch_fails_in_one_line(server, monkeypatch, tmp_path, capfd):
    real = zoo.ZOO[NAME]
    server.files[urllib.parse.urlparse(real.url).path] = b"not the released file"
    rc = cli(["--target", "cpu", "--detector", NAME, "--det-precision", "fp32", "--out", str(tmp_path / "o")])
    line = _one_line(capfd)
    assert rc == EXIT_INPUT
    assert "SHA-256 mismatch" in line and real.sha256_prefix in line and "--detector PATH" in line
    assert not list((tmp_path / "cache" / "checkpoints").glob("*.pth"))


def test_offline_fails_in_one_line_naming_url_and_local_path(monkeypatch, tmp_path, capfd):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(zoo.MIRROR_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    rc = cli(["--target", "cpu", "--detector", NAME, "--det-precision", "fp32", "--out", str(tmp_path / "o")])
    line = _one_line(capfd)
    assert rc == EXIT_INPUT
    path = urllib.parse.urlparse(zoo.ZOO[NAME].url).path
    assert f"http://127.0.0.1:{port}{path}" in line and "--detector PATH" in line
    assert not (tmp_path / "o").exists()


def test_local_pth_of_another_net_is_refused_in_one_line(tmp_path, capfd):
    from build.models import build_pose_net

    p = tmp_path / "pose.pth"
    torch.save({"state_dict": build_pose_net("fixture-s").state_dict()}, p)
    rc = cli(
        ["--target", "cpu", "--detector", str(p), "--det-precision", "fp32", "--out", str(tmp_path / "o")]
    )
    line = _one_line(capfd)
    assert rc == EXIT_INPUT and "not an RTMDet checkpoint" in line and str(p) in line
