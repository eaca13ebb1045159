"""Routing costs (build/costs.py): the prediction and the warning decided in plain Python with
chosen costs, a real CPU build storing its measured cost ratios in the manifest, ratios that
survive a CPU hog, budget mode reading the ratios (runtime.pose.routing.cost_ratios), and the
re-measurement on the device rewriting the manifest (dynpose costs, refresh_costs=True)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from build.costs import Costs, format_cost_table, predict, routing_warning
from runtime.pose.routing import cost_ratios

NAMES = {"router": "router", "small": "res50", "large": "hrnet-w32"}


def test_prediction_is_the_ideal_mixture() -> None:
    p = predict(Costs(router=1.0, small=10.0, large=30.0), f=0.25)
    assert p["dyn_ms_per_crop"] == pytest.approx(0.75 * 10 + 0.25 * 30 + 1)
    assert (p["small"], p["large"], p["dyn"]) == pytest.approx((100.0, 1e3 / 30, 1e3 / 16))


def test_small_cheaper_no_warning() -> None:
    assert routing_warning(Costs(0.5, 20.0, 40.0), 0.5, "fp32", NAMES) is None


def test_small_dearer_warns_with_the_options() -> None:
    # issue 20's int8_cpu costs: ResNet-50 46.3 crops/s, HRNet-W32 61.6 crops/s
    c = Costs(router=0.3, small=1e3 / 46.3, large=1e3 / 61.6)
    fp32 = Costs(router=0.6, small=1e3 / 30.0, large=1e3 / 22.8)
    w = routing_warning(c, 0.51, "int8_cpu", NAMES, {"fp32": fp32})
    assert w is not None and "ROUTING CANNOT PAY" in w and "res50" in w and "hrnet-w32" in w
    assert "--policy large" in w and "another small net" in w
    assert "--precision fp32" in w and "routing pays there" in w  # fp32 small is cheaper
    assert f"{predict(c, 0.51)['large']:.1f} crops/s" in w


def test_router_eating_the_gain_warns() -> None:
    # small cheaper, but router + mixture is slower than the large net alone
    c = Costs(router=6.0, small=18.0, large=20.0)
    assert predict(c, 0.5)["dyn"] < predict(c, 0.5)["large"]
    w = routing_warning(c, 0.5, "fp32", NAMES)
    assert w is not None and "router" in w and "--policy large" in w


def test_manifest_costs_match_backend_and_precision() -> None:
    m = {
        "routing": {
            "costs": {
                "entries": [
                    {
                        "backend": "ort",
                        "precision": "fp32",
                        "ms_per_crop": {"router": 1.0, "small": 10.0, "large": 20.0},
                    },
                    {
                        "backend": "ort",
                        "precision": "int8_cpu",
                        "ms_per_crop": {"router": 0.5, "small": 4.0, "large": 6.0},
                    },
                    {
                        "backend": "trt",
                        "precision": "int8",
                        "ms_per_crop": {"router": 0.1, "small": 0.5, "large": 0.9},
                    },
                ]
            }
        }
    }
    # absolute ms only (an old build, trtexec): their ratios to the small net
    assert cost_ratios(m, "ort", "int8_cpu") == {"router": 0.125, "small": 1.0, "large": 1.5}
    assert cost_ratios(m, "ort", None)["large"] == 2.0
    assert cost_ratios(m, "trt", "fp32")["large"] == pytest.approx(
        1.8
    )  # TensorRT: the engines' own precision
    assert cost_ratios(m, "ort", "fp16") is None and cost_ratios(m, "triton", "fp32") is None
    # stored ratios win over the absolute figures of the moment
    m["routing"]["costs"]["entries"][0]["ratios"] = {"small": 1.0, "large": 3.0, "router": 0.2}
    assert cost_ratios(m, "ort", "fp32") == {"small": 1.0, "large": 3.0, "router": 0.2}
    bad = {
        "routing": {
            "costs": {
                "entries": [
                    {"backend": "ort", "precision": "fp32", "ms_per_crop": {"small": "x", "large": math.nan}}
                ]
            }
        }
    }
    assert cost_ratios(bad, "ort", "fp32") is None and cost_ratios({}, "ort", "fp32") is None


def test_cpu_build_stores_measured_costs(cpu_artifacts: Path) -> None:
    from runtime.artifacts.manifest import load_manifest

    m = load_manifest(cpu_artifacts)
    costs = m["routing"]["costs"]
    assert costs["measured"] and costs["clock"] == "wall" and costs["shipped"] == "fp32"
    (entry,) = costs["entries"]
    assert entry["backend"] == "ort" and entry["precision"] == "fp32" and entry["batch"] >= 1
    for role in ("router", "small", "large"):
        assert entry["ms_per_crop"][role] > 0 and entry["cpu_ms_per_crop"][role] > 0
    # what budget routing reads: ratios to the small net, with their spread and how they were taken
    r = entry["ratios"]
    assert r["small"] == 1.0 and r["large"] > 0 and r["router"] > 0
    assert entry["ratio_spread"]["large"][0] <= r["large"] <= entry["ratio_spread"]["large"][1]
    assert entry["rounds"] >= 5 and "interleaved" in entry["how"] and entry["clock"] == "wall"
    c = Costs.of(entry["ms_per_crop"])
    assert entry["predicted_crops_per_s"]["dyn"] == pytest.approx(
        predict(c, costs["large_fraction"])["dyn"], rel=1e-3
    )
    assert costs["routing_pays"] == (costs["warning"] is None)
    assert "<- ships" in format_cost_table(costs)


def test_budget_mode_starts_from_the_manifest_costs(coco_mini: Path, cpu_artifacts: Path) -> None:
    import json

    import cv2

    from runtime.pose.pipeline import PosePipeline

    im = sorted(
        json.loads((coco_mini / "person_keypoints.json").read_text())["images"], key=lambda i: i["id"]
    )[0]
    boxes = np.array(
        [
            d["bbox"]
            for d in json.loads((coco_mini / "person_detections.json").read_text())
            if d["image_id"] == im["id"]
        ]
    )
    image = cv2.imread(str(coco_mini / im["file_name"]))
    with PosePipeline(cpu_artifacts, policy="dyn", backend="ort", budget_ms=1e9) as pipe:
        assert pipe.cost_source == "manifest"
        want = cost_ratios(pipe.manifest, "ort", "fp32")
        ms = pipe._ms_per_crop  # the small net timed here, the large one through the stored ratio
        assert ms["small"] > 0 and ms["large"] == pytest.approx(want["large"] * ms["small"])
        res = pipe(image, boxes)
        assert np.isfinite(res.keypoints[:, :, :2]).any()


def _copy_artifacts(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_budget_mode_reads_the_ratios_not_the_absolute_figures(cpu_artifacts: Path, tmp_path: Path) -> None:
    """Absolute figures from a loaded build (1000 ms/crop) must not reach budget routing: the
    stored ratio does, anchored by the small net timed on this machine."""
    import json

    from runtime.pose.pipeline import PosePipeline

    root = _copy_artifacts(cpu_artifacts, tmp_path / "a")
    m = json.loads((root / "manifest.json").read_text())
    (entry,) = m["routing"]["costs"]["entries"]
    entry["ms_per_crop"] = {"router": 1000.0, "small": 1000.0, "large": 9000.0}
    entry["ratios"] = {"small": 1.0, "large": 2.5, "router": 0.25}
    (root / "manifest.json").write_text(json.dumps(m))
    with PosePipeline(root, policy="dyn", backend="ort", budget_ms=50.0) as pipe:
        ms = pipe._ms_per_crop
        assert ms["small"] < 1000.0 and ms["large"] == pytest.approx(2.5 * ms["small"])


def test_costs_command_and_refresh_at_load_rewrite_the_manifest(cpu_artifacts: Path, tmp_path: Path) -> None:
    import json

    from runtime.artifacts.manifest import load_manifest
    from runtime.cli.main import main as dynpose
    from runtime.pose.pipeline import load_pipeline

    root = _copy_artifacts(cpu_artifacts, tmp_path / "a")
    m = json.loads((root / "manifest.json").read_text())
    m["routing"]["costs"]["entries"][0]["ratios"] = {"small": 1.0, "large": 99.0, "router": 99.0}
    (root / "manifest.json").write_text(json.dumps(m))
    assert dynpose(["costs", str(root), "--backend", "ort", "--rounds", "3", "--batch", "4"]) == 0
    after = load_manifest(root)  # still a valid manifest, its files' hashes unchanged
    (entry,) = [e for e in after["routing"]["costs"]["entries"] if e["precision"] == "fp32"]
    assert entry["ratios"]["large"] != 99.0 and entry["rounds"] == 3 and "measured_at" in entry
    assert sorted(p.name for p in root.iterdir()) == sorted(
        p.name for p in cpu_artifacts.iterdir()
    )  # no temp left
    stamp = entry["measured_at"]
    entry["ratios"]["large"] = 99.0
    (root / "manifest.json").write_text(json.dumps(after))
    with load_pipeline(root, backend="ort", refresh_costs=True):
        pass
    (again,) = [e for e in load_manifest(root)["routing"]["costs"]["entries"] if e["precision"] == "fp32"]
    assert again["ratios"]["large"] != 99.0 and again["measured_at"] >= stamp


def test_costs_command_bad_folder_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    from runtime.cli.main import main as dynpose

    assert dynpose(["costs", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]
