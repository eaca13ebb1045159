"""FP16 ONNX: fp32 I/O, the sparsemax/decode tail and sigmoid heads in fp32, the rest fp16."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_calib_quantize import export_net

from calib.fp16 import _drop_cast_roundtrips, convert_fp16, fp32_nodes, toposort
from calib.quantize import QUANT_OPS, float_tail, name_nodes
from calib.report import compare, run_onnx


@pytest.fixture(scope="module")
def prob(tmp_path_factory, coco_mini):
    from calib.data import load_coco_calib

    d = tmp_path_factory.mktemp("fp16")
    src = export_net(d, "fixture-s", "probmap")
    return src, convert_fp16(src, d / "prob.fp16.onnx"), load_coco_calib(coco_mini, max_crops=8).crops


def test_io_fp32_tail_fp32_convs_fp16(prob):
    src, dst, _ = prob
    half = onnx.load(str(dst))
    onnx.checker.check_model(half)  # topologically sorted, valid
    for v in list(half.graph.input) + list(half.graph.output):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, v.name
    tail = float_tail(name_nodes(onnx.load(str(src))))
    keep = fp32_nodes(onnx.shape_inference.infer_shapes(half))
    float_ops = {n.op_type for n in half.graph.node if n.name in tail & keep}
    assert {"TopK", "CumSum", "Sigmoid"} <= float_ops
    # no fp16 round trip between two fp32 nodes of the tail (the converter's default wrapping)
    producer = {o: n for n in half.graph.node for o in n.output}
    to16 = [
        n
        for n in half.graph.node
        if n.op_type == "Cast"
        and n.attribute[0].i == onnx.TensorProto.FLOAT16
        and producer.get(n.input[0]) is not None
        and producer[n.input[0]].name in tail
    ]
    assert to16 == []
    weights = {i.name: i.data_type for i in half.graph.initializer}
    convs = [n for n in half.graph.node if n.op_type in QUANT_OPS]
    assert convs and all(weights.get(n.input[1]) == onnx.TensorProto.FLOAT16 for n in convs)


def test_fp16_runs_and_tracks_fp32(prob):
    src, dst, crops = prob
    ref = run_onnx(src, crops)
    got = run_onnx(dst, crops, list(ref))
    m = compare("probmap", ref, got)
    assert m["finite"] and m["mean_oks"] > 0.95
    np.testing.assert_allclose(got["probmaps"].reshape(len(crops), 17, -1).sum(-1), 1.0, atol=1e-4)


def test_toposort_orders_and_rejects_cycles():
    a = onnx.helper.make_node("Relu", ["y"], ["z"], name="b")
    b = onnx.helper.make_node("Relu", ["x"], ["y"], name="a")
    g = onnx.helper.make_graph(
        [a, b],
        "g",
        [onnx.helper.make_tensor_value_info("x", 1, [1])],
        [onnx.helper.make_tensor_value_info("z", 1, [1])],
    )
    m = toposort(onnx.helper.make_model(g))
    assert [n.name for n in m.graph.node] == ["a", "b"]
    cyc = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["z"], ["y"], name="c"), a],
        "g",
        [onnx.helper.make_tensor_value_info("x", 1, [1])],
        [onnx.helper.make_tensor_value_info("z", 1, [1])],
    )
    with pytest.raises(ValueError, match="cycle"):
        toposort(onnx.helper.make_model(cyc))


def test_cast_round_trips_dropped_and_outputs_keep_their_names():
    """fp32 -> fp16 -> fp32 Cast pairs go (readers take the fp32 tensor; a graph output's up-cast
    becomes an Identity); casts around a real fp16 node stay."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16

    def cast(i: str, o: str, to: int) -> onnx.NodeProto:
        return onnx.helper.make_node("Cast", [i], [o], to=to)

    nodes = [
        onnx.helper.make_node("Relu", ["x"], ["r"]),
        cast("r", "r16", f16),
        cast("r16", "r32", f32),
        onnx.helper.make_node("Neg", ["r32"], ["n"]),
        cast("n", "n16", f16),
        onnx.helper.make_node("Abs", ["n16"], ["m16"]),
        cast("m16", "m32", f32),
        cast("n", "o16", f16),
        cast("o16", "out", f32),
    ]
    outs = [onnx.helper.make_tensor_value_info(o, f32, [2]) for o in ("m32", "out")]
    graph = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", f32, [2])], outs)
    model = _drop_cast_roundtrips(onnx.helper.make_model(graph))
    got = [(n.op_type, list(n.input), list(n.output)) for n in model.graph.node]
    assert got == [
        ("Relu", ["x"], ["r"]),
        ("Neg", ["r"], ["n"]),
        ("Cast", ["n"], ["n16"]),
        ("Abs", ["n16"], ["m16"]),
        ("Cast", ["m16"], ["m32"]),
        ("Identity", ["n"], ["out"]),
    ]
