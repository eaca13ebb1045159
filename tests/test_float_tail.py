"""The float-tail rules on small synthetic graphs (no model-specific names): a fixed-weight op over a
Softmax is decode, Shape never pulls the tail upstream, and check_trt_qdq sees a quantized decode
op and survives scalar Dequantize -> Mul."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calib.quantize import check_trt_qdq, float_tail, head_ops, name_nodes, quantize_onnx


def _dfl_net(learned_after_softmax: bool = False, with_shape: bool = False) -> onnx.ModelProto:
    """x -> Conv(learned, 16 ch) -> Reshape [N,1,16,64] -> Softmax -> Conv(arange or random) -> out."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 3, 1, 1)).astype(np.float32)
    w2 = rng.normal(size=(1, 1, 16, 1)).astype(np.float32) if learned_after_softmax \
        else np.arange(16, dtype=np.float32).reshape(1, 1, 16, 1)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([-1, 1, 16, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="learned"),
             helper.make_node("Relu", ["c1"], ["r1"], name="act"),
             helper.make_node("Reshape", ["r1", "shape"], ["d"], name="bins"),
             helper.make_node("Softmax", ["d"], ["p"], axis=2, name="softmax"),
             helper.make_node("Conv", ["p", "w2"], ["e"], name="expectation")]
    out = "e"
    if with_shape:   # dynamic-shape export: the output is reshaped with the shape of a neck tensor
        nodes += [helper.make_node("Shape", ["r1"], ["s"], name="shape_of_neck"),
                  helper.make_node("Reshape", ["e", "s2"], ["out"], name="final_reshape"),
                  helper.make_node("Gather", ["s", "i0"], ["n"], axis=0, name="batch_dim"),
                  helper.make_node("Concat", ["n", "rest"], ["s2"], axis=0, name="new_shape")]
        inits += [numpy_helper.from_array(np.array([0], np.int64), "i0"),
                  numpy_helper.from_array(np.array([1, 64], np.int64), "rest")]
        out = "out"
    g = helper.make_graph(nodes, "dfl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_fixed_weights_over_softmax_are_tail_learned_ones_are_not() -> None:
    tail = float_tail(_dfl_net())
    assert tail == {"expectation", "softmax", "bins", "act"}          # stops at the learned conv
    # any constant weight over a softmax is an expectation (the rule reads structure, not values)
    assert float_tail(_dfl_net(learned_after_softmax=True)) == tail
    # a weight computed from the input (attention: softmax @ V) is not decode and stops the walk
    m = _dfl_net()
    m.graph.node[4].input[1] = "c1"      # weight now an activation: attention-like, not decode
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
    assert conv.input[1] == "w2"                              # the bin positions stay float
    bad = quantize_onnx(src, tmp_path / "bad.onnx", crops, "int8_trt", "minmax", keep_float=[])
    problems = check_trt_qdq(onnx.load(str(bad)))
    assert any("inside the float tail" in p for p in problems), problems
    # a scalar Dequantize feeding a Mul (what the int8_cpu flavour emits) is reported, not an IndexError
    m = onnx.load(str(good))
    m.graph.initializer.extend([numpy_helper.from_array(np.array(3, np.int8), "q3"),
                                numpy_helper.from_array(np.array(0.5, np.float32), "sc"),
                                numpy_helper.from_array(np.array(0, np.int8), "zp")])
    out = m.graph.output[0].name
    m.graph.node[-1].output[0] = "pre"
    m.graph.node.extend([helper.make_node("DequantizeLinear", ["q3", "sc", "zp"], ["k"], name="scalar_dq"),
                         helper.make_node("Mul", ["pre", "k"], [out], name="scale_mul")])
    problems = check_trt_qdq(m)
    assert any("scalar_dq" in p and "Mul" in p for p in problems), problems
