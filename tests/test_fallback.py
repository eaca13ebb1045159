"""calib.fallback: block grouping, output drift and the greedy float-fallback search."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from calib.fallback import fit_fallback, keypoint_drift, module_groups, output_drift
from runtime.detectors.yolo import YoloLayout


def _scoped_model(names: list[str]) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=n) for i, n in enumerate(names)]
    nodes.append(
        helper.make_node(
            "Constant",
            [],
            ["c"],
            name="Constant_0",
            value=helper.make_tensor("v", TensorProto.FLOAT, [], [1.0]),
        )
    )
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(f"t{len(names)}", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(g)


def test_groups_follow_the_exporter_scope() -> None:
    names = [
        "/model.0/conv/Conv",
        "/model.0/act/Sigmoid",
        "/model.1/m.0/cv1/Conv",
        "/model.2/Add",
        "/model.3/Add",
        "/model.4/Mul",
        "Relu_7",
    ]
    g = module_groups(_scoped_model(names), skip={"/model.3/Add"})
    assert g == {
        "model.0": names[:2],
        "model.1": [names[2]],
        "model.2": [names[3]],
        "model.4": [names[5]],
        "Relu_7": ["Relu_7"],
    }
    # one wrapper scope: the second level names the block
    wrapped = ["/backbone/layer1/Conv", "/backbone/layer1/Relu", "/backbone/layer2/Conv", "/head/Conv"]
    assert module_groups(_scoped_model(wrapped)) == {
        "backbone/layer1": wrapped[:2],
        "backbone/layer2": [wrapped[2]],
        "head": [wrapped[3]],
    }
    # the exporter's unscoped Identity aliases of shared weights are no block (RTMPose-t has 28)
    m = _scoped_model(wrapped)
    m.graph.node.append(helper.make_node("Identity", ["c"], ["alias"], name="Identity_13"))
    assert "Identity_13" not in module_groups(m)


def _yolo_pose(n_anchors: int, rng: np.random.Generator) -> np.ndarray:
    """A yolov8-pose output [1, 4 + 1 + 17*3, A]: boxes, person score, keypoints (x, y, visibility)."""
    out = np.zeros((1, 56, n_anchors), np.float32)
    out[0, :4] = rng.uniform(50, 400, (4, n_anchors))
    out[0, 4] = np.linspace(0, 1, n_anchors)
    kp = out[0, 5:].reshape(17, 3, n_anchors)
    kp[:, :2] = rng.uniform(0, 640, (17, 2, n_anchors))
    kp[:, 2] = 0.9
    return out


def test_output_drift_is_the_mean_error_on_confident_anchors() -> None:
    rng = np.random.default_rng(0)
    lay = YoloLayout.from_dict({"family": "yolov8", "num_classes": 1, "kpt_shape": [17, 3]})
    ref = _yolo_pose(200, rng)
    got = ref.copy()
    kp = got[0, 5:].reshape(17, 3, 200)
    kp[:, 0, 100:] += 3.0  # every keypoint of the confident half moves 3 px in x
    kp[:, 0, :100] += 50.0  # unconfident anchors (score < 0.5) do not count
    assert abs(output_drift(ref, got, lay) - 3.0) < 1e-4
    box = ref.copy()
    box[0, 0, 100:] += 2.0  # the centre moves 2 px: every corner x moves 2 px
    assert abs(output_drift(ref, box, lay) - 1.0) < 1e-4  # mean over 4 corner coordinates
    assert output_drift(ref, ref, lay) == 0.0


def test_greedy_search_keeps_the_fewest_helpful_blocks() -> None:
    groups = {"a": ["a1"], "b": ["b1", "b2"], "c": ["c1"], "d": ["d1"]}
    gain = {"a1": 0.05, "b1": 0.2, "b2": 0.1, "c1": 0.25, "d1": 0.0}
    built: list[set[str]] = []

    def quantize(extra: set[str]) -> frozenset:
        built.append(set(extra))
        return frozenset(extra)

    def drift(model: frozenset) -> float:
        return 1.5 - sum(gain[n] for n in model)

    fb, model = fit_fallback(groups, quantize, drift, budget=1.0)
    assert fb.groups == ["b", "c"] and model == {"b1", "b2", "c1"} and fb.met
    assert abs(fb.drift - 0.95) < 1e-9 and fb.drift_before == 1.5 and fb.trials == 1 + 4 + 3
    assert built[-1] == {"b1", "b2", "c1"}  # the chosen graph is the one left on disk
    # already within budget: one build, nothing float
    fb, model = fit_fallback(groups, quantize, lambda m: 0.5, budget=1.0)
    assert fb.groups == [] and fb.trials == 1 and model == frozenset()
    # no block helps: stop and say so (not met), nothing kept float
    fb, model = fit_fallback(groups, quantize, lambda m: 2.0, budget=1.0)
    assert fb.groups == [] and not fb.met and model == frozenset()
    # at most max_groups blocks
    fb, _ = fit_fallback(groups, quantize, drift, budget=0.0, max_groups=2)
    assert len(fb.groups) == 2 and not fb.met


def _peaks(xy: np.ndarray, score: np.ndarray) -> np.ndarray:
    """[N,17,64,48] heatmaps, one single-pixel peak per keypoint (no sub-pixel shift)."""
    hm = np.zeros((*xy.shape[:2], 64, 48), np.float32)
    for n, k in np.ndindex(*xy.shape[:2]):
        hm[n, k, xy[n, k, 1], xy[n, k, 0]] = score[n, k]
    return hm


def test_keypoint_drift_is_in_input_pixels_on_the_confident_keypoints() -> None:
    rng = np.random.default_rng(1)
    xy = np.stack([rng.integers(2, 40, (2, 17)), rng.integers(2, 50, (2, 17))], -1)
    score = np.where(np.arange(17) < 9, 0.9, 0.05)[None].repeat(2, 0).astype(np.float32)
    moved = xy.copy()
    moved[:, :9, 0] += 1  # confident keypoints: one heatmap px = 4 input px at 256x192
    moved[:, 9:, 1] += 10  # flat-map keypoints jump far: they do not count
    ref, got = {"heatmaps": _peaks(xy, score)}, {"heatmaps": _peaks(moved, score)}
    assert abs(keypoint_drift("heatmap", ref, got, (256, 192)) - 4.0) < 1e-5
    assert keypoint_drift("heatmap", ref, ref, (256, 192)) == 0.0
    everything = keypoint_drift("heatmap", ref, got, (256, 192), confident=1.0)
    assert abs(everything - (18 * 4.0 + 16 * 40.0) / 34) < 1e-4
    broken = {"heatmaps": got["heatmaps"].copy()}
    broken["heatmaps"][0, 0] = np.nan
    assert keypoint_drift("heatmap", ref, broken, (256, 192)) == float("inf")


def test_pose_nets_get_the_measured_fallback_and_the_manifest_tells_the_truth(tmp_path, coco_mini) -> None:
    """The trained fixture-s through calib.stage.make_int8: drift measured and recorded without a
    budget; with budget 0 the search keeps blocks float, the drift does not grow, and the nodes it
    names read no Q/DQ in the written model."""
    import json
    from pathlib import Path

    import torch

    from build.export import export_onnx
    from build.models import build_pose_net
    from calib.data import load_coco_calib
    from calib.quantize import name_nodes
    from calib.report import run_onnx
    from calib.stage import make_int8

    net = build_pose_net("fixture-s", "heatmap")
    sd = torch.load(Path(__file__).parents[1] / "build/fixtures/small.pth", weights_only=True)["state_dict"]
    net.load_state_dict(sd)
    export_onnx(net.eval(), tmp_path / "small.onnx", net.output_names)
    calib = load_coco_calib(coco_mini, max_crops=16)
    crops = calib.crops

    def build(budget: float | None) -> dict:
        manifest = {"models": {"small": {"onnx": "small.onnx", "head": "heatmap"}}}
        make_int8(
            tmp_path, manifest, calib.by_hw, "minmax", ("int8_cpu",), log=lambda m: None, drift_px=budget
        )
        return json.loads(json.dumps(manifest["models"]["small"]["variants"]["int8_cpu"]))

    ref = run_onnx(tmp_path / "small.onnx", crops)
    measured = build(None)["fallback"]
    assert measured["budget_px"] is None and measured["float_groups"] == [] and measured["met"]
    assert measured["drift_px"] == measured["drift_before_px"] > 0
    got = run_onnx(tmp_path / "small.int8_cpu.onnx", crops, list(ref))
    assert abs(keypoint_drift("heatmap", ref, got, (256, 192)) - measured["drift_px"]) < 1e-3

    searched = build(0.0)["fallback"]
    assert searched["budget_px"] == 0.0 and not searched["met"]
    assert abs(searched["drift_before_px"] - measured["drift_px"]) < 1e-3  # same ranges, same graph
    assert searched["float_groups"] and searched["drift_px"] < searched["drift_before_px"]
    q = onnx.load(str(tmp_path / "small.int8_cpu.onnx"))
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    groups = module_groups(name_nodes(onnx.load(str(tmp_path / "small.onnx"))))
    names = {name for g in searched["float_groups"] for name in groups[g]}
    floated = [n for n in q.graph.node if n.name in names]
    assert floated and not any(producer.get(i) == "DequantizeLinear" for n in floated for i in n.input)
    got = run_onnx(tmp_path / "small.int8_cpu.onnx", crops, list(ref))
    assert abs(keypoint_drift("heatmap", ref, got, (256, 192)) - searched["drift_px"]) < 1e-3


def test_simcc_drift_is_in_input_pixels_too() -> None:
    """A SimCC head's grid is the input itself (bins at split ratio 2): 2 bins = 1 input px."""
    x = np.full((1, 17, 384), -1.0, np.float32)
    y = np.full((1, 17, 512), -1.0, np.float32)
    x[0, :, 100], y[0, :, 200] = 0.9, 0.9
    moved_x = np.roll(x, 2, axis=-1)  # every keypoint 2 bins right: 1 input px
    ref = {"simcc_x": x, "simcc_y": y}
    assert abs(keypoint_drift("simcc", ref, {"simcc_x": moved_x, "simcc_y": y}, (256, 192)) - 1.0) < 1e-6
