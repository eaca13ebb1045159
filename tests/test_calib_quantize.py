"""INT8 Q/DQ: both flavours load and run in ONNX Runtime, the TensorRT flavour has
Q/DQ only where TensorRT fuses it, and nothing in the sparsemax/decode tail is quantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from calib.quantize import (
    QUANT_OPS,
    CropReader,
    check_trt_qdq,
    float_tail,
    name_nodes,
    quantize_onnx,
    restrict_qdq,
)
from calib.report import run_onnx
from runtime.backends.ort_session import open_session


def export_net(out: Path, arch: str, head: str, seed: int = 0) -> Path:
    """A small registered net (or the router) exported at opset 17 with random weights."""
    from build.export import export_onnx
    from build.models import build_pose_net, build_router

    torch.manual_seed(seed)
    model = build_router() if arch == "router" else build_pose_net(arch, head)
    for mod in model.modules():  # varied BN statistics so channels differ (per-channel matters)
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    model.eval()
    return export_onnx(model, out / f"{arch}-{head}.onnx", model.output_names)


@pytest.fixture(scope="module")
def nets(tmp_path_factory, coco_mini: Path) -> dict:
    from calib.data import load_coco_calib

    d = tmp_path_factory.mktemp("qnets")
    crops = load_coco_calib(coco_mini, max_crops=8).crops
    out = {"crops": crops, "dir": d}
    for key, (arch, head) in {
        "prob": ("fixture-s", "probmap"),
        "heat": ("fixture-s", "heatmap"),
        "router": ("router", "score"),
    }.items():
        src = export_net(d, arch, head)
        out[key] = {"fp32": src}
        for fl in (
            "int8_trt",
            "int8_cpu",
        ):  # TensorRT first: the CPU flavour must not reuse its partial ranges
            out[key][fl] = quantize_onnx(
                src, d / f"{key}.{fl}.onnx", crops, fl, "minmax", cache=d / f"{key}.cache.json"
            )
    return out


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [
        consts[n.input[2]]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]


@pytest.mark.parametrize("key", ["prob", "heat", "router"])
@pytest.mark.parametrize("flavour", ["int8_trt", "int8_cpu"])
def test_qdq_models_load_run_and_track_fp32(nets, key, flavour):
    ref = run_onnx(nets[key]["fp32"], nets["crops"])
    got = run_onnx(nets[key][flavour], nets["crops"], list(ref))
    model = onnx.load(str(nets[key][flavour]))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 0
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producer[o.name] != "DequantizeLinear" for o in model.graph.output)  # outputs stay float
    for name in ref:
        assert got[name].shape == ref[name].shape
        assert np.isfinite(got[name]).all(), name
        scale = float(np.abs(ref[name]).max()) or 1.0
        assert np.abs(got[name] - ref[name]).max() < 0.25 * scale, name
    if "probmaps" in got:
        np.testing.assert_allclose(
            got["probmaps"].reshape(len(got["probmaps"]), 17, -1).sum(-1), 1.0, atol=1e-3
        )


@pytest.mark.parametrize("key", ["prob", "heat", "router"])
def test_trt_flavour_placement_symmetry_and_per_channel(nets, key):
    model = onnx.load(str(nets[key]["int8_trt"]))
    assert check_trt_qdq(model) == []
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs
    for dq in dqs:
        users = consumers.get(dq.output[0], [])
        assert users and all(u.op_type in QUANT_OPS for u in users), [u.op_type for u in users]
        if dq.input[0] not in inits:  # activation: must come from a Q node (a pair)
            assert producer[dq.input[0]].op_type == "QuantizeLinear"
    zps = _zero_points(model)
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    # every multi-channel Conv/Gemm weight has one scale per output channel
    for n in model.graph.node:
        if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
            w_dq = producer.get(n.input[1])
            assert w_dq is not None and w_dq.op_type == "DequantizeLinear", f"{n.name}: weight not quantized"
            w = inits[w_dq.input[0]]
            assert w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 127
            axis = 1 if n.op_type == "ConvTranspose" else 0
            if w.shape[axis] > 1:
                assert inits[w_dq.input[1]].size == w.shape[axis], n.name
            if len(n.input) > 2:  # bias stays float for TensorRT
                assert n.input[2] in inits and inits[n.input[2]].dtype == np.float32


def test_cpu_flavour_uses_uint8_activations(nets):
    model = onnx.load(str(nets["heat"]["int8_cpu"]))
    zps = _zero_points(model)
    assert any(z.dtype == np.uint8 for z in zps) and any(z.dtype == np.int8 for z in zps)


def _tail_tensors_finite(path: Path, crops: np.ndarray) -> tuple[bool, dict[str, np.ndarray]]:
    """Run with every float tensor of the tail exposed as an output; any inf/NaN anywhere?"""
    model = name_nodes(onnx.load(str(path)))
    tail = float_tail(model)
    names = [
        o
        for n in model.graph.node
        if n.name in tail and n.op_type not in ("Shape", "Constant")
        for o in n.output
    ]
    have = {o.name for o in model.graph.output}
    for nm in names:
        if nm not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(nm))
    sess = open_session(model.SerializeToString())
    outs = dict(zip(names, sess.run(names, {"input": crops})))
    floats = {k: v for k, v in outs.items() if np.asarray(v).dtype.kind == "f"}
    return all(np.isfinite(v).all() for v in floats.values()), floats


def test_sparsemax_trap_naive_quantization_gives_inf_ours_does_not(nets):
    """Quantizing the sparsemax subgraph (what 'quantize every op' does) collapses the
    cumulative sums: some rows get an empty support, tau = x/0 = -inf, and the maps
    saturate to 1 behind the clamp. With the float tail excluded nothing is non-finite."""
    d, crops, src = nets["dir"], nets["crops"], nets["prob"]["fp32"]
    naive = quantize_onnx(src, d / "prob.naive.onnx", crops, "int8_cpu", "minmax", keep_float=[])
    naive_model = onnx.load(str(naive))
    assert any("Q/DQ inside the float tail" in p for p in check_trt_qdq(naive_model))
    finite, _ = _tail_tensors_finite(naive, crops)
    assert not finite, "naive quantization of the sparsemax tail should produce inf (the known trap)"
    pm = run_onnx(naive, crops, ["probmaps"])["probmaps"]
    assert np.abs(pm.reshape(len(pm), 17, -1).sum(-1) - 1).max() > 0.5  # no longer distributions

    for flavour in ("int8_cpu", "int8_trt"):
        finite, tensors = _tail_tensors_finite(nets["prob"][flavour], crops)
        assert finite and tensors
        q = onnx.load(str(nets["prob"][flavour]))
        tail = float_tail(name_nodes(q))
        assert not [
            n.name
            for n in q.graph.node
            if n.name in tail and n.op_type in ("QuantizeLinear", "DequantizeLinear")
        ]


def test_float_tail_covers_sparsemax_and_sigmoid_heads_only(nets):
    model = name_nodes(onnx.load(str(nets["prob"]["fp32"])))
    tail = float_tail(model)
    ops = {n.op_type for n in model.graph.node if n.name in tail}
    assert {"TopK", "CumSum", "GatherElements", "Clip", "Sigmoid"} <= ops
    assert not ops & set(QUANT_OPS)
    heat = name_nodes(onnx.load(str(nets["heat"]["fp32"])))
    assert float_tail(heat) == set()  # heatmaps come straight from the final conv
    with pytest.raises(ValueError, match="not produced"):
        float_tail(model, ["nope"])


def test_checker_rejects_what_tensorrt_cannot_fuse(nets):
    """The guard must be able to fail: per-tensor weights, non-zero zero points,
    Q/DQ in front of a non-linear op."""
    d, crops, src = nets["dir"], nets["crops"], nets["heat"]["fp32"]
    per_tensor = quantize_onnx(src, d / "heat.pt.onnx", crops, "int8_trt", "minmax", per_channel=False)
    assert any("per tensor" in p for p in check_trt_qdq(onnx.load(str(per_tensor))))
    cpu = onnx.load(str(nets["heat"]["int8_cpu"]))
    probs = check_trt_qdq(cpu)
    assert any("zero point" in p for p in probs) and any("only" in p for p in probs)
    # restrict_qdq strips Q/DQ from everything but the linear ops
    restricted = restrict_qdq(onnx.load(str(nets["heat"]["int8_cpu"])), QUANT_OPS)
    assert not [p for p in check_trt_qdq(restricted) if "feeds" in p]


@pytest.mark.parametrize("method", ["entropy", "percentile", "minmax"])
def test_every_calibration_method_runs(nets, method, tmp_path):
    out = quantize_onnx(
        nets["router"]["fp32"], tmp_path / f"r.{method}.onnx", nets["crops"], "int8_trt", method
    )
    assert check_trt_qdq(onnx.load(str(out))) == []
    assert np.isfinite(run_onnx(out, nets["crops"])["score"]).all()


def test_bad_inputs_name_the_fix(nets, tmp_path):
    with pytest.raises(ValueError, match="calib-method"):
        quantize_onnx(nets["router"]["fp32"], tmp_path / "x.onnx", nets["crops"], "int8_trt", "kl")
    with pytest.raises(ValueError, match="flavour"):
        quantize_onnx(nets["router"]["fp32"], tmp_path / "x.onnx", nets["crops"], "int4", "minmax")
    with pytest.raises(ValueError, match="non-empty"):
        CropReader(np.zeros((0, 3, 256, 192), np.float32))


def test_reader_batches_and_ranges():
    r = CropReader(np.zeros((19, 3, 4, 4), np.float32), batch=8)
    assert len(r) == 3
    assert [len(b["input"]) for b in iter(r.get_next, None)] == [8, 8, 3]
    r.set_range(1, 2)
    assert len(r.get_next()["input"]) == 8 and r.get_next() is None


def test_checker_names_each_qdq_problem_on_a_hand_made_graph():
    """One node per problem check_trt_qdq knows, in a graph small enough to read: a Quantize that
    feeds a Relu, a zero point that is not int8 zero, a Gemm weight without a channel axis, a
    per-tensor Conv weight, and (the Relu being an output) a Q inside the float tail; a well-formed
    per-channel Conv weight is not reported."""
    h, f32 = onnx.helper, np.float32

    def init(name: str, v: np.ndarray) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(v, name)

    inits = [
        init("s", np.array(0.1, f32)),
        init("z", np.array(0, np.int8)),
        init("z_u8", np.array(3, np.uint8)),
        init("w_conv", np.ones((4, 3, 1, 1), np.int8)),
        init("w_good", np.ones((4, 3, 1, 1), np.int8)),
        init("s_good", np.full(4, 0.1, f32)),
        init("w_gemm", np.ones(4, np.int8)),
    ]
    nodes = [
        h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_relu"),
        h.make_node("Relu", ["xq"], ["r"], name="relu"),
        h.make_node("QuantizeLinear", ["x", "s", "z_u8"], ["xq8"], name="q_u8"),
        h.make_node("DequantizeLinear", ["xq8", "s", "z_u8"], ["xd"], name="dq_u8"),
        h.make_node("DequantizeLinear", ["w_conv", "s", "z"], ["wc"], name="dq_per_tensor"),
        h.make_node("Conv", ["xd", "wc"], ["c"], name="conv"),
        h.make_node("DequantizeLinear", ["w_good", "s_good", "z"], ["wg"], name="dq_good", axis=0),
        h.make_node("Conv", ["xd", "wg"], ["c2"], name="conv_good"),
        h.make_node("DequantizeLinear", ["w_gemm", "s", "z"], ["wm"], name="dq_rank"),
        h.make_node("Gemm", ["xd", "wm"], ["g"], name="gemm"),
    ]
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 2, 2])
    outs = [h.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in ("r", "c", "c2", "g")]
    problems = check_trt_qdq(h.make_model(h.make_graph(nodes, "g", [x], outs, inits)))
    assert [p.split(":")[0] for p in problems] == [
        "q_relu",
        "q_u8",
        "dq_u8",
        "dq_per_tensor",
        "dq_rank",
        "q_relu",
    ]
    assert "QuantizeLinear feeds ['Relu'], not a DequantizeLinear" in problems[0]
    assert "zero point" in problems[1] and "zero point" in problems[2]
    assert "weight of conv quantized per tensor" in problems[3]
    assert "weight of gemm has rank 1; a Gemm weight needs an output-channel axis 1" in problems[4]
    assert "Q/DQ inside the float tail" in problems[5]
