"""Routing costs (build/costs.py): the prediction and the warning decided in plain Python with
chosen costs, a real CPU build storing its measured costs in the manifest, and budget mode
starting from them (runtime.pose.routing.manifest_costs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from build.costs import Costs, format_cost_table, predict, routing_warning
from runtime.pose.routing import manifest_costs

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
    assert manifest_costs(m, "ort", "int8_cpu") == {"router": 0.5, "small": 4.0, "large": 6.0}
    assert manifest_costs(m, "ort", None)["small"] == 10.0
    assert manifest_costs(m, "trt", "fp32")["large"] == 0.9  # TensorRT: the engines' own precision
    assert manifest_costs(m, "ort", "fp16") is None and manifest_costs(m, "triton", "fp32") is None
    bad = {
        "routing": {
            "costs": {
                "entries": [
                    {"backend": "ort", "precision": "fp32", "ms_per_crop": {"small": "x", "large": math.nan}}
                ]
            }
        }
    }
    assert manifest_costs(bad, "ort", "fp32") is None and manifest_costs({}, "ort", "fp32") is None


def test_cpu_build_stores_measured_costs(cpu_artifacts: Path) -> None:
    from runtime.artifacts.manifest import load_manifest

    m = load_manifest(cpu_artifacts)
    costs = m["routing"]["costs"]
    assert costs["measured"] and costs["clock"] == "wall" and costs["shipped"] == "fp32"
    (entry,) = costs["entries"]
    assert entry["backend"] == "ort" and entry["precision"] == "fp32" and entry["batch"] >= 1
    for role in ("router", "small", "large"):
        assert entry["ms_per_crop"][role] > 0 and entry["cpu_ms_per_crop"][role] > 0
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
        want = manifest_costs(pipe.manifest, "ort", "fp32")
        assert pipe._ms_per_crop == {r: want[r] for r in ("small", "large")}
        res = pipe(image, boxes)
        assert np.isfinite(res.keypoints[:, :, :2]).any()
