"""ProbPose fields in the results: visibility, predicted OKS, quality and credible regions that map
to the image through the keypoints' own inverse affine; the coverage calibration stored by the build
reaches its target on held-out synthetic crops; the CLI flags and the overlay option."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from build.synth import load_photos, make_scene
from calib.report import run_onnx
from runtime.artifacts.manifest import load_manifest
from runtime.heads.credible import CoverageMap, credible_regions
from runtime.heads.grid import heatmap_to_image
from runtime.io.draw_regions import draw_regions
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.preprocess import boxes_to_center_scale, make_crops, sanitize_boxes


@pytest.fixture(scope="module")
def scene():
    sc = make_scene(np.random.default_rng([77, 0]), load_photos(), n_people=3, level="easy")
    assert len(sc.boxes) >= 2
    return sc


def _run(root, sc, **kw):
    with PosePipeline(root, PipelineOptions(**kw)) as pipe:
        return pipe(sc.image, sc.boxes, sc.scores)


def test_probmap_rows_carry_all_fields_and_regions_follow_the_keypoint_affine(cpu_artifacts, scene):
    m = load_manifest(cpu_artifacts)
    assert m["models"]["large"]["head"] == "probmap" and m["credible"]["fitted"]
    res = _run(cpu_artifacts, scene, policy="large", credible=(0.5, 0.9))
    kept = np.flatnonzero(res.route == 1)
    assert len(kept) >= 2
    # the reference: the ONNX outputs of the same crops, regions taken as the manifest's calibration says
    b, keep, _ = sanitize_boxes(
        np.asarray(scene.boxes, np.float64), scene.image.shape[:2], np.asarray(scene.scores), None, 64
    )
    c, s = boxes_to_center_scale(b)
    outs = run_onnx(cpu_artifacts / m["models"]["large"]["onnx"], make_crops(scene.image, c, s))
    cm = CoverageMap.from_json(m["credible"]["coverage_map"])
    nominal = [cm.nominal_for(q) for q in (0.5, 0.9)]
    reg = credible_regions(cm.prepare(outs["probmaps"]), nominal)
    persons = res.persons()
    for j, row in enumerate(keep):
        p = persons[row]
        np.testing.assert_allclose(p["visibility"], outs["visibility"][j], atol=1e-4)
        np.testing.assert_allclose(p["oks"], outs["oks"][j], atol=1e-4)
        assert p["quality"] == pytest.approx(float(np.mean(outs["oks"][j])), abs=1e-4)
        assert p["present"] == (res.presence[row] >= m["presence"]["threshold"]).tolist()
        for qi, q in enumerate(("0.5", "0.9")):
            r = p["regions"][q]
            sx, sy = s[j, 0] / 48, s[j, 1] / 64
            np.testing.assert_allclose(r["area"], reg.n_pixels[qi, j] * sx * sy, rtol=1e-6, atol=0.01)
            centre = heatmap_to_image(reg.ellipse[qi, j][None, :, :2], c[j : j + 1], s[j : j + 1])[0]
            np.testing.assert_allclose(np.array(r["ellipse"])[:, :2], centre, atol=2e-3)
            axes = np.array(r["ellipse"])[:, 2:4]
            assert (axes[:, 0] >= axes[:, 1] - 1e-3).all()
            # the crop scales x and y alike (3:4 boxes, 3:4 maps): the axes scale by that factor
            np.testing.assert_allclose(axes, reg.ellipse[qi, j][:, 2:4] * sx, rtol=1e-3, atol=2e-3)
        a5, a9 = np.array(p["regions"]["0.5"]["area"]), np.array(p["regions"]["0.9"]["area"])
        assert (a9 >= a5).all() and (a9 > a5).any()
    assert json.loads(json.dumps(res.to_coco(1)))[0]["regions"]["0.9"]["area"]


def test_heatmap_rows_have_none_and_regions_can_be_switched_off(cpu_artifacts, scene):
    small = _run(cpu_artifacts, scene, policy="small").persons()
    assert not any(k in small[0] for k in ("oks", "visibility", "regions", "quality"))
    off = _run(cpu_artifacts, scene, policy="large", credible=()).persons()
    assert "oks" in off[0] and "regions" not in off[0]


def test_overlay_draws_regions_only_where_there_are_some(cpu_artifacts, scene):
    res = _run(cpu_artifacts, scene, policy="large")
    img = np.zeros_like(scene.image)
    assert draw_regions(img, res).any()
    blank = np.zeros_like(scene.image)
    assert not draw_regions(blank, _run(cpu_artifacts, scene, policy="small")).any()


def test_images_cli_writes_regions_and_rejects_bad_masses(cpu_artifacts, scene, tmp_path, capsys):
    from runtime.images import main

    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "000000000007.png"), scene.image)
    dets = [
        {"image_id": 7, "category_id": 1, "bbox": [float(v) for v in bx], "score": 0.9} for bx in scene.boxes
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "res.json"
    args = [
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(tmp_path / "img"),
        "--dets",
        str(tmp_path / "dets.json"),
        "--out",
        str(out),
        "--policy",
        "large",
    ]
    assert main([*args, "--credible", "0.5,0.8,0.95"]) == 0
    got = json.loads(out.read_text())
    assert set(got[0]["regions"]) == {"0.5", "0.8", "0.95"} and len(got[0]["oks"]) == 17
    capsys.readouterr()
    assert main([*args, "--credible", "0.5,1.5"]) == 2  # bad input: one line, exit code 2
    assert "error: argument --credible" in capsys.readouterr().err


def test_coverage_calibration_meets_target_on_held_out_synthetic_crops(cpu_artifacts):
    from calib.coverage import evaluate

    res = evaluate(cpu_artifacts, n_scenes=100, seed=1000)
    q = np.asarray(res["q"])
    after, before = np.asarray(res["after"]), np.asarray(res["before"])
    # the target is 3 points at 0.5, 0.7 and 0.9; this fixture reaches it at 0.7 and 0.9 but
    # lands 4 points under at 0.5 on this held-out seed (docs/results/2026-12-probpose.md), so 0.5 gets 5
    for target, tol in ((0.5, 0.05), (0.7, 0.03), (0.9, 0.03)):
        i = int(np.argmin(np.abs(q - target)))
        assert abs(after[i] - target) <= tol, (target, after[i])
    assert np.abs(after - q)[4:].max() < np.abs(before - q)[4:].max()
    assert res["spearman"]["keypoint"] > 0.3 and res["spearman"]["person"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1000, 3000])
def test_coverage_calibration_meets_the_3_point_target_on_300_held_out_scenes(cpu_artifacts, seed):
    """The issue's target, measured where it can be measured: 100-scene sets spread more than 3 points
    at q = 0.5 by sampling alone (calib.coverage.N_EVAL_SCENES), 300 scenes bring the s.e. to ~1.6."""
    from calib.coverage import N_EVAL_SCENES, evaluate

    res = evaluate(cpu_artifacts, n_scenes=N_EVAL_SCENES, seed=seed)
    q, after = np.asarray(res["q"]), np.asarray(res["after"])
    assert res["n_crops"] > 500 and max(res["after_se"]) < 0.025
    for target in (0.5, 0.7, 0.9):
        i = int(np.argmin(np.abs(q - target)))
        assert abs(after[i] - target) <= 0.03, (seed, target, after[i])


def test_video_cli_jsonl_carries_regions_and_overlay_draws_them(cpu_artifacts, shared_data, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    dets = tmp_path / "d.json"
    dets.write_text(
        json.dumps(
            [
                {"image_id": i, "category_id": 1, "bbox": [398.25, 251.5, 145.5, 351.0], "score": 0.9}
                for i in range(2)
            ]
        )
    )

    def run(out, *extra):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "runtime.video",
                "--engines",
                str(cpu_artifacts),
                "--source",
                str(shared_data / "video" / "people.mp4"),
                "--out",
                str(out),
                "--detector",
                f"json:{dets}",
                "--policy",
                "large",
                "--max-frames",
                "2",
                "--threads",
                "1",
                "--quiet",
                "--credible",
                "0.9",
                *extra,
            ],
            cwd=repo,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert r.returncode == 0, r.stderr
        frames = []
        cap = cv2.VideoCapture(str(out / "people.overlay.avi"))
        while (got := cap.read())[0]:
            frames.append(got[1].astype(int))
        return [json.loads(x) for x in (out / "people.jsonl").read_text().splitlines()], frames

    recs, plain = run(tmp_path / "a")
    _, drawn = run(tmp_path / "b", "--draw-regions")
    p = recs[0]["persons"][0]
    assert list(p["regions"]) == ["0.9"] and len(p["regions"]["0.9"]["ellipse"]) == 17 and len(p["oks"]) == 17
    assert len(plain) == len(drawn) == 2 and np.abs(drawn[0] - plain[0]).sum() > 0


def test_coco_person_score_uses_predicted_oks_for_probmap_people():
    """A ProbMapHead person's keypoint scores are expected-OKS maxima (~0.03): the heatmap rescoring
    (mean of scores > 0.2) would give it score 0 and rank it below every heatmap person; its score is
    box score x mean predicted OKS instead, and a heatmap person keeps MMPose's rescoring."""
    from runtime.heads.probfields import ProbExtras
    from runtime.pose.results import FrameResult

    kps = np.zeros((2, 17, 3), np.float32)
    kps[0, :, 2] = 0.03  # probmap person: tiny expected-OKS maxima
    kps[1, :, 2] = np.r_[np.full(10, 0.8), np.full(7, 0.1)]  # heatmap person
    prob = ProbExtras.empty(2, (0.5,))
    prob.has[0] = True
    prob.oks[0] = np.linspace(0.5, 0.9, 17)
    res = FrameResult(
        np.ones((2, 4), np.float32),
        kps,
        np.ones((2, 17), np.float32),
        np.array([1, 0], np.int8),
        np.zeros(2, np.float32),
        np.array([0.9, 0.5], np.float32),
        prob=prob,
    )
    recs = res.to_coco(7)
    assert recs[0]["score"] == pytest.approx(0.9 * 0.7, rel=1e-5)
    assert recs[1]["score"] == pytest.approx(0.5 * 0.8, rel=1e-5)
    prob.oks[0] = np.nan  # a ProbMapHead without an OKS output: heatmap rule
    assert res.to_coco(7)[0]["score"] == 0.0
