"""The triton backend against a real ``tritonserver`` (bundled by nvidia-pytriton) on loopback.

Marker ``triton``: its own CI step after ``bash tools/setup_triton.sh``. A
missing server is an error (the fixture raises), never a skip. The artifacts
are the trained fixture config (small nets: the whole file runs in about a
minute here); the repository is written by ``build.engines --triton-repo``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.data import REPO, build_artifacts
from runtime.backends import BackendError
from runtime.heads.registry import decode_outputs
from runtime.images import load_detections
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.preprocess import boxes_to_center_scale, make_crops, sanitize_boxes
from tools.triton_server import TritonServer, start_server

pytestmark = pytest.mark.triton
FEW = 6  # boxes per frame in the many-frame tests: 4 x 20 frames stay quick on 2 cores
KILL_FAIL_S = 10.0  # a dead server must fail waiting clients this fast (their request timeout is 60 s)


@pytest.fixture(scope="session")
def triton_build(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> tuple[Path, Path]:
    """(artifacts, repository) from one real build."""
    root = tmp_path_factory.mktemp("triton")
    repo = root / "repo"
    art = build_artifacts(
        root / "art", "fixture-dyn", extra=("--calib-data", str(coco_mini), "--triton-repo", str(repo))
    )
    return art, repo


@pytest.fixture(scope="session")
def server(triton_build: tuple[Path, Path]) -> TritonServer:
    s = start_server(triton_build[1])
    yield s
    s.stop()
    assert s.proc.poll() is not None and not s.group_alive()  # no python-backend stub left behind


@pytest.fixture(scope="session")
def frames(coco_mini: Path) -> list[tuple[np.ndarray, list, list]]:
    per, _ = load_detections(coco_mini / "person_detections.json", coco_mini)
    return [
        (cv2.imread(str(coco_mini / name)), [d.bbox for d in per[name][1]], [d.score for d in per[name][1]])
        for name in sorted(per)
    ]


@pytest.fixture(scope="session")
def few_frames(frames: list) -> list:
    """The four frames with their first FEW boxes each."""
    return [(im, boxes[:FEW], scores[:FEW]) for im, boxes, scores in frames]


@pytest.fixture(scope="session")
def reference(triton_build: tuple[Path, Path], frames: list, few_frames: list) -> tuple[list, list]:
    """The in-process ORT backend's results for the four coco-mini frames (all boxes, FEW boxes)."""
    with PosePipeline(triton_build[0], PipelineOptions(backend="ort")) as pipe:
        return [pipe(*f) for f in frames], [pipe(*f) for f in few_frames]


def _triton(art: Path, url: str, timeout_s: float = 60.0) -> PosePipeline:
    return PosePipeline(
        art, PipelineOptions(backend="triton", backend_options={"url": url, "timeout_s": timeout_s})
    )


def test_same_keypoints_as_ort_on_coco_mini(triton_build, server, frames, reference) -> None:
    with _triton(triton_build[0], server.grpc_url) as pipe:
        got = list(pipe.run_many(frames))
    assert sum(len(r.keypoints) for r in got) == 118
    for g, r in zip(got, reference[0]):
        np.testing.assert_array_equal(g.route, r.route)
        assert np.nanmax(np.abs(g.keypoints[..., :2] - r.keypoints[..., :2])) <= 1e-4
        assert np.array_equal(np.isnan(g.keypoints), np.isnan(r.keypoints))
        np.testing.assert_allclose(g.keypoints[..., 2], r.keypoints[..., 2], atol=1e-5)
        np.testing.assert_allclose(g.presence, r.presence, atol=1e-5)
    assert {int(x) for r in got for x in r.route} == {0, 1}  # both nets really served


def test_four_clients_get_complete_ordered_results(triton_build, server, few_frames, reference) -> None:
    n_frames, results, errors = 20, {}, []

    def client(i: int) -> None:
        try:
            with _triton(triton_build[0], server.grpc_url) as pipe:
                results[i] = list(pipe.run_many(few_frames[(i + k) % 4] for k in range(n_frames)))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and sorted(results) == [0, 1, 2, 3]
    for i, res in results.items():
        assert len(res) == n_frames
        for k, r in enumerate(res):  # frame k of client i is image (i + k) % 4: order kept
            ref = reference[1][(i + k) % 4]
            assert len(r.keypoints) == len(ref.keypoints) == FEW
            assert np.array_equal(np.isnan(r.keypoints), np.isnan(ref.keypoints))
            assert np.nanmax(np.abs(r.keypoints[..., :2] - ref.keypoints[..., :2])) <= 1e-4


def test_bls_dynpose_model_matches_local_decode(triton_build, server, frames) -> None:
    import tritonclient.grpc as grpcclient

    art = triton_build[0]
    image, boxes, scores = frames[0]
    b, _, _ = sanitize_boxes(np.asarray(boxes, np.float32), image.shape[:2])
    crops = make_crops(image, *boxes_to_center_scale(b))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("crops", list(crops.shape), "FP32")
    inp.set_data_from_numpy(crops)
    out = client.infer("dynpose", [inp], client_timeout=60)
    with PosePipeline(art, PipelineOptions(backend="ort")) as pipe:
        score = pipe.runners["router"].infer(crops, pipe.streams["router"])["score"].reshape(-1)
        large = (score >= pipe.k1) & (score <= pipe.k2)
        np.testing.assert_array_equal(out.as_numpy("route"), large.astype(np.int8))
        for role, mask in (("small", ~large), ("large", large)):
            outs = pipe.runners[role].infer(np.ascontiguousarray(crops[mask]), pipe.streams[role])
            xy, ks, pres = decode_outputs(pipe.heads[role], outs, pipe.temperature)
            assert np.abs(out.as_numpy("keypoints")[mask] - xy).max() <= 1e-4
            np.testing.assert_allclose(out.as_numpy("keypoint_scores")[mask], ks, atol=1e-5)
            np.testing.assert_allclose(out.as_numpy("presence")[mask], pres, atol=1e-5)


def test_images_cli_with_triton_backend(triton_build, server, coco_mini, tmp_path) -> None:
    thin = tmp_path / "camera"  # a camera client carries the manifest only, no models
    thin.mkdir()
    shutil.copy2(triton_build[0] / "manifest.json", thin / "manifest.json")
    args = [
        "--engines",
        str(thin),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
    ]
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.images",
            *args,
            "--out",
            str(tmp_path / "t.json"),
            "--backend",
            "triton",
            "--triton-url",
            server.grpc_url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads((tmp_path / "t.json").read_text())) == 118
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.images",
            *args,
            "--out",
            str(tmp_path / "b.json"),
            "--backend",
            "triton",
            "--triton-url",
            "127.0.0.1:9",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert lines[-1].startswith("error: cannot reach Triton at 127.0.0.1:9") and "--triton-url" in lines[-1]


def test_kill_mid_run_fails_every_client_fast_then_restart_works(triton_build, few_frames, reference) -> None:
    art, repo = triton_build
    srv = start_server(repo)
    done: dict[int, list] = {i: [] for i in range(4)}
    failures: dict[int, tuple[float, str]] = {}

    def client(i: int) -> None:
        try:
            with _triton(art, srv.grpc_url) as pipe:
                for r in pipe.run_many(f for f in itertools.cycle(few_frames)):  # until the server dies
                    done[i].append(r)
        except BackendError as e:
            failures[i] = (time.monotonic(), str(e))

    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while min(len(v) for v in done.values()) < 2 and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
        assert not failures and min(len(v) for v in done.values()) >= 2
        kept = {i: len(v) for i, v in done.items()}
        t_kill = time.monotonic()
        srv.kill()
        for t in threads:
            t.join(KILL_FAIL_S + 5)
        assert not any(t.is_alive() for t in threads), "a client hangs after the server died"
    finally:
        srv.stop()
    assert sorted(failures) == [0, 1, 2, 3]
    for i, (t_fail, msg) in failures.items():
        assert t_fail - t_kill < KILL_FAIL_S, f"client {i} took {t_fail - t_kill:.1f} s to fail"
        assert "\n" not in msg and "Triton at" in msg and "--triton-url" in msg
        assert len(done[i]) >= kept[i]  # frames finished before the kill are all still there
        for k, r in enumerate(done[i]):
            assert np.nanmax(np.abs(r.keypoints[..., :2] - reference[1][k % 4].keypoints[..., :2])) <= 1e-4
    assert not srv.group_alive()  # the crash took its python-backend stubs with it
    again = start_server(repo)  # a restarted server serves a new client run
    try:
        with _triton(art, again.grpc_url) as pipe:
            got = list(pipe.run_many(few_frames))
    finally:
        again.stop()
    assert [len(r.keypoints) for r in got] == [FEW] * 4
    assert (
        max(np.nanmax(np.abs(g.keypoints[..., :2] - r.keypoints[..., :2])) for g, r in zip(got, reference[1]))
        <= 1e-4
    )


def test_model_that_fails_to_load_is_a_clear_error_not_a_dead_server(triton_build, tmp_path) -> None:
    art, repo = triton_build
    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    for v in (broken / "small").iterdir():
        if v.is_dir():
            (v / "model.onnx").write_bytes(b"this is not an onnx file")
    srv = start_server(broken)
    try:
        assert srv.ready() and srv.proc.poll() is None
        with pytest.raises(BackendError) as e:
            _triton(art, srv.grpc_url)
        msg = str(e.value)
        assert "small" in msg and "not loaded" in msg and "\n" not in msg
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(srv.grpc_url)
        assert client.is_model_ready("router") and client.is_model_ready("large")
        assert not client.is_model_ready("small")
        assert "small" in srv.log() and "UNAVAILABLE" in srv.log()
    finally:
        srv.stop()


def test_video_cli_server_killed_mid_run_is_one_line_exit_3_frames_kept(
    triton_build, few_frames, tmp_path
) -> None:
    art, repo = triton_build
    src = tmp_path / "frames"  # 200 numbered frames cycling the four images, FEW boxes each
    src.mkdir()
    dets = []
    for i in range(200):
        image, boxes, scores = few_frames[i % 4]
        cv2.imwrite(str(src / f"{i + 1:06d}.jpg"), image)
        dets += [
            {"image_id": i + 1, "bbox": list(map(float, b)), "score": float(s)} for b, s in zip(boxes, scores)
        ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "out"
    srv = start_server(repo, models=["router", "small", "large"])
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime.video",
                "--engines",
                str(art),
                "--source",
                str(src),
                "--detector",
                f"json:{tmp_path / 'dets.json'}",
                "--backend",
                "triton",
                "--triton-url",
                srv.grpc_url,
                "--no-video",
                "--quiet",
                "--out",
                str(out),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        jsonl = out / f"{src.name}.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.is_file() and jsonl.read_text().count("\n") >= 3:
                break
            time.sleep(0.1)
        written = jsonl.read_text().count("\n")
        assert proc.poll() is None and written >= 3
        srv.kill()
        t_kill = time.monotonic()
        _, err = proc.communicate(timeout=KILL_FAIL_S + 20)
        took = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    lines = err.strip().splitlines()
    assert proc.returncode == 3, err
    assert took < KILL_FAIL_S + 5, f"the video job took {took:.1f} s to stop after the server died"
    assert "Traceback" not in err and lines[-1].startswith("error: ") and "Triton at" in lines[-1]
    records = [json.loads(x) for x in jsonl.read_text().splitlines()]  # every line valid, none lost
    assert len(records) >= written and [r["frame"] for r in records] == list(range(len(records)))
    assert all(0 < len(r["persons"]) <= FEW for r in records)


def test_version_add_that_fills_the_disk_leaves_a_repository_the_server_loads(
    triton_build, few_frames, reference, tmp_path
) -> None:
    """build.triton_repo adding a version on a full disk (RLIMIT_FSIZE: EFBIG) fails in one line and
    the real server still loads the repository and serves the previous version's results."""
    from test_disk_full import _limit

    art, repo = triton_build
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy, symlinks=True)
    biggest = max(p.stat().st_size for p in copy.rglob("model.onnx"))
    r = subprocess.run(
        [sys.executable, "-m", "build.triton_repo", "--engines", str(art), "--out", str(copy)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit(biggest // 2),
    )
    assert r.returncode == 4 and r.stderr.count("error:") == 1 and str(copy) in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    srv = start_server(copy)
    try:
        with _triton(art, srv.grpc_url) as pipe:
            got = list(pipe.run_many(few_frames))
    finally:
        srv.stop()
    assert (
        max(np.nanmax(np.abs(g.keypoints[..., :2] - r.keypoints[..., :2])) for g, r in zip(got, reference[1]))
        <= 1e-4
    )


def _frames_folder(few_frames: list, root: Path, n: int) -> tuple[Path, Path]:
    """``n`` numbered frames cycling the four images, FEW boxes each, and their detections file."""
    src = root / "frames"
    src.mkdir()
    dets = []
    for i in range(n):
        image, boxes, scores = few_frames[i % 4]
        cv2.imwrite(str(src / f"{i + 1:06d}.jpg"), image)
        dets += [
            {"image_id": i + 1, "bbox": list(map(float, b)), "score": float(s)} for b, s in zip(boxes, scores)
        ]
    (root / "dets.json").write_text(json.dumps(dets))
    return src, root / "dets.json"


def _kill_server_mid_run(repo: Path, argv: list[str], progress: Path) -> tuple[int, str]:
    """Start a server and ``argv`` against it; kill the server once ``progress`` has grown; the exit."""
    srv = start_server(repo, models=["router", "small", "large"])
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv, "--triton-url", srv.grpc_url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if progress.is_file() and progress.stat().st_size > 2000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"{argv[0]} ended before the server was killed: {proc.communicate()}"
        srv.kill()
        _, err = proc.communicate(timeout=KILL_FAIL_S + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    return proc.returncode, err


def test_server_killed_mid_run_same_exit_for_images_and_1_or_3_cameras(
    triton_build, few_frames, tmp_path
) -> None:
    """A backend lost part-way is "incomplete" (exit 3, outputs so far kept) for runtime.images and
    runtime.video with one camera or three (was: 2 with several cameras, runtime.outcome now)."""
    art, repo = triton_build
    src, dets = _frames_folder(few_frames, tmp_path, 400)
    video = [
        "runtime.video",
        "--engines",
        str(art),
        "--detector",
        f"json:{dets}",
        "--no-video",
        "--quiet",
    ]
    runs = {
        "images": (
            ["runtime.images", "--engines", str(art), "--images", str(src), "--dets", str(dets)],
            tmp_path / "i" / "results.json",
        ),
        "video x1": (
            [*video, "--source", str(src), "--out", str(tmp_path / "v1")],
            tmp_path / "v1" / "frames.jsonl",
        ),
        "video x3": (
            [*video, *["--source", str(src)] * 3, "--out", str(tmp_path / "v3")],
            tmp_path / "v3" / "frames.jsonl",
        ),
    }
    runs["images"][0].extend(["--out", str(tmp_path / "i")])
    for what, (argv, progress) in runs.items():
        code, err = _kill_server_mid_run(repo, argv, progress)
        lines = err.strip().splitlines()
        assert code == 3, f"{what}: exit {code}: {err}"
        assert "Traceback" not in err and lines[-1].startswith("error: ") and "Triton at" in lines[-1], err
        if progress.suffix == ".jsonl":  # every line written is whole and in order
            records = [json.loads(x) for x in progress.read_text().splitlines()]
            assert records and [r["frame"] for r in records] == list(range(len(records)))
        else:  # still one valid JSON list of whole images
            assert len(json.loads(progress.read_text())) > 0
