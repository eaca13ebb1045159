"""The float-tail rules on small synthetic graphs (no model-specific names): a fixed-weight op over a
Softmax is decode, Shape never pulls the tail upstream, check_trt_qdq sees a quantized decode
op and survives scalar Dequantize -> Mul, and a head decoded linearly into coordinates keeps its
branch (up to the fork) float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calib.float_tail import head_ops, regression_branches, regression_heads
from calib.quantize import (
    check_trt_qdq,
    float_head_ops,
    float_tail,
    name_nodes,
    quantize_onnx,
)


def _dfl_net(learned_after_softmax: bool = False, with_shape: bool = False) -> onnx.ModelProto:
    """x -> Conv(learned, 16 ch) -> Reshape [N,1,16,64] -> Softmax -> Conv(arange or random) -> out."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 3, 1, 1)).astype(np.float32)
    w2 = (
        rng.normal(size=(1, 1, 16, 1)).astype(np.float32)
        if learned_after_softmax
        else np.arange(16, dtype=np.float32).reshape(1, 1, 16, 1)
    )
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.array([-1, 1, 16, 64], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="learned"),
        helper.make_node("Relu", ["c1"], ["r1"], name="act"),
        helper.make_node("Reshape", ["r1", "shape"], ["d"], name="bins"),
        helper.make_node("Softmax", ["d"], ["p"], axis=2, name="softmax"),
        helper.make_node("Conv", ["p", "w2"], ["e"], name="expectation"),
    ]
    out = "e"
    if with_shape:  # dynamic-shape export: the output is reshaped with the shape of a neck tensor
        nodes += [
            helper.make_node("Shape", ["r1"], ["s"], name="shape_of_neck"),
            helper.make_node("Reshape", ["e", "s2"], ["out"], name="final_reshape"),
            helper.make_node("Gather", ["s", "i0"], ["n"], axis=0, name="batch_dim"),
            helper.make_node("Concat", ["n", "rest"], ["s2"], axis=0, name="new_shape"),
        ]
        inits += [
            numpy_helper.from_array(np.array([0], np.int64), "i0"),
            numpy_helper.from_array(np.array([1, 64], np.int64), "rest"),
        ]
        out = "out"
    g = helper.make_graph(
        nodes,
        "dfl",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_fixed_weights_over_softmax_are_tail_learned_ones_are_not() -> None:
    tail = float_tail(_dfl_net())
    assert tail == {"expectation", "softmax", "bins", "act"}  # stops at the learned conv
    # any constant weight over a softmax is an expectation (the rule reads structure, not values)
    assert float_tail(_dfl_net(learned_after_softmax=True)) == tail
    # a weight computed from the input (attention: softmax @ V) is not decode and stops the walk
    m = _dfl_net()
    m.graph.node[4].input[1] = "c1"  # weight now an activation: attention-like, not decode
    assert float_tail(m) == set()
    assert head_ops(_dfl_net()) == {"learned"}


def test_shape_node_does_not_pull_the_tail_upstream() -> None:
    tail = float_tail(_dfl_net(with_shape=True))
    assert "shape_of_neck" in tail and "learned" not in tail
    assert tail >= {"final_reshape", "batch_dim", "new_shape", "expectation", "softmax"}


def test_checker_flags_a_quantized_decode_op_and_survives_scalar_dq(tmp_path: Path) -> None:
    src = tmp_path / "dfl.onnx"
    onnx.save(name_nodes(_dfl_net()), str(src))
    crops = np.random.default_rng(1).normal(size=(8, 3, 8, 8)).astype(np.float32)
    good = quantize_onnx(src, tmp_path / "good.onnx", crops, "int8_trt", "minmax")
    assert check_trt_qdq(onnx.load(str(good))) == []
    conv = next(n for n in onnx.load(str(good)).graph.node if n.name == "expectation")
    assert conv.input[1] == "w2"  # the bin positions stay float
    bad = quantize_onnx(src, tmp_path / "bad.onnx", crops, "int8_trt", "minmax", keep_float=[])
    problems = check_trt_qdq(onnx.load(str(bad)))
    assert any("inside the float tail" in p for p in problems), problems
    # a scalar Dequantize feeding a Mul (what the int8_cpu flavour emits) is reported, not an IndexError
    m = onnx.load(str(good))
    m.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(3, np.int8), "q3"),
            numpy_helper.from_array(np.array(0.5, np.float32), "sc"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
    )
    out = m.graph.output[0].name
    m.graph.node[-1].output[0] = "pre"
    m.graph.node.extend(
        [
            helper.make_node("DequantizeLinear", ["q3", "sc", "zp"], ["k"], name="scalar_dq"),
            helper.make_node("Mul", ["pre", "k"], [out], name="scale_mul"),
        ]
    )
    problems = check_trt_qdq(m)
    assert any("scalar_dq" in p and "Mul" in p for p in problems), problems


def _two_head_net(score_head: bool = True) -> onnx.ModelProto:
    """stem -> f; f -> [conv+SiLU] x2 -> 1x1 head -> *2 + grid (coordinates) -> out;
    f -> conv+Relu -> 1x1 head -> Sigmoid (a score) -> out (concatenated)."""
    rng = np.random.default_rng(0)

    def w(name: str, o: int, i: int, k: int = 3) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, (o, i, k, k)).astype(np.float32), name)

    inits = [
        w("ws", 8, 3),
        w("wk0", 8, 8),
        w("wk1", 8, 8),
        w("wk2", 4, 8, 1),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(rng.normal(size=(1, 4, 8, 8)).astype(np.float32), "grid"),
    ]
    pad = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "ws"], ["s"], name="stem", **pad),
        helper.make_node("Relu", ["s"], ["f"], name="stem_act"),
    ]
    for k, src in ((0, "f"), (1, "k0y")):  # two conv + SiLU (x * sigmoid(x)) layers
        nodes += [
            helper.make_node("Conv", [src, f"wk{k}"], [f"k{k}c"], name=f"k{k}", **pad),
            helper.make_node("Sigmoid", [f"k{k}c"], [f"k{k}g"], name=f"k{k}_sig"),
            helper.make_node("Mul", [f"k{k}c", f"k{k}g"], [f"k{k}y"], name=f"k{k}_mul"),
        ]
    nodes += [
        helper.make_node("Conv", ["k1y", "wk2"], ["raw"], name="k2"),
        helper.make_node("Mul", ["raw", "two"], ["r2"], name="k_scale"),
        helper.make_node("Add", ["r2", "grid"], ["xy"], name="k_shift"),
    ]
    out = "xy"
    if score_head:
        inits += [w("wc0", 8, 8), w("wc1", 1, 8, 1)]
        nodes += [
            helper.make_node("Conv", ["f", "wc0"], ["c0"], name="c0", **pad),
            helper.make_node("Relu", ["c0"], ["c0y"], name="c0_act"),
            helper.make_node("Conv", ["c0y", "wc1"], ["logit"], name="c1"),
            helper.make_node("Sigmoid", ["logit"], ["score"], name="c_sig"),
            helper.make_node("Concat", ["xy", "score"], ["out"], axis=1, name="cat"),
        ]
        out = "out"
    g = helper.make_graph(
        nodes,
        "heads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_regression_head_branch_goes_up_to_the_fork_and_no_further() -> None:
    m = _two_head_net()
    assert head_ops(m) == {"k2", "c1"}
    assert regression_heads(m) == {"k2"}  # the score head is squashed by its Sigmoid
    layers = {"k2", "k1", "k1_sig", "k1_mul", "k0", "k0_sig", "k0_mul"}
    assert regression_branches(m) == layers  # stem feeds both heads: the fork stops it
    assert regression_branches(m, depth=5) == layers
    assert regression_branches(m, depth=1) == {"k2", "k1", "k1_sig", "k1_mul"}
    assert regression_branches(m, depth=0) == {"k2"}
    assert float_head_ops(m) == layers | {"c1"}
    # a single-path net is "exclusive" all the way to its input: the depth cap stops it
    single = _two_head_net(score_head=False)
    assert regression_branches(single) == layers
    assert regression_branches(single, depth=3) == layers | {"stem", "stem_act"}


def test_float_heads_keep_the_regression_branch_out_of_int8(tmp_path: Path) -> None:
    src = tmp_path / "heads.onnx"
    onnx.save(name_nodes(_two_head_net()), str(src))
    crops = np.random.default_rng(1).normal(size=(8, 3, 8, 8)).astype(np.float32)
    for flavour in ("int8_trt", "int8_cpu"):
        q = onnx.load(
            str(quantize_onnx(src, tmp_path / f"{flavour}.onnx", crops, flavour, "minmax", float_heads=True))
        )
        producer = {o: n for n in q.graph.node for o in n.output}
        reads_dq = {
            n.name
            for n in q.graph.node
            if any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)
        }
        assert not reads_dq & {"k0", "k1", "k2", "k0_mul", "k1_mul"}, (flavour, reads_dq)
        assert {"stem", "c0"} <= reads_dq, (
            flavour,
            reads_dq,
        )  # the shared stem and the score branch are int8
        if flavour == "int8_trt":
            assert check_trt_qdq(q) == []
