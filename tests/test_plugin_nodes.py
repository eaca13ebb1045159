"""build/plugin_nodes.py: the custom ONNX nodes TensorRT's parser maps onto libdynpose_plugins.so."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from build.plugin_nodes import (
    DECODE_OP,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SIMCC_DECODE_OP,
    SPARSEMAX_OP,
    RegionSpec,
    add_decode_plugin,
    add_sparsemax_plugin,
    plugin_nodes,
    region_spec,
)
from kernels.host_build import KERNELS_DIR
from runtime.backends.ort_session import open_session
from runtime.heads import registry
from runtime.heads.decode import COCO_SIGMAS
from runtime.heads.simcc import SPEC as SIMCC
from runtime.heads.simcc import SimCCDecoder
from tests.simcc_net import HY, WX, export_tiny_simcc


def _net(outputs: tuple[str, ...]) -> onnx.ModelProto:
    """A stand-in head: maps [N,17,64,48] straight to the named outputs (plus presence)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 17, 64, 48])
    nodes = [helper.make_node("Identity", ["input"], [o]) for o in outputs]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 17, 64, 48]) for o in outputs]
    nodes.append(helper.make_node("ReduceMax", ["input"], ["presence"], axes=[2, 3], keepdims=0))
    outs.append(helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["N", 17]))
    g = helper.make_graph(nodes, "net", [x], outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _cpp_fields(source: str) -> set[str]:
    text = (KERNELS_DIR / "plugin" / source).read_text()
    return set(re.findall(r'PluginField\("(\w+)"', text))


def test_probmap_logits_get_fused_decode():
    model = _net(("logits",))
    out = add_decode_plugin(model, "probmap", temperature=0.5)
    (node,) = plugin_nodes(out)
    a = _attrs(node)
    assert node.op_type == DECODE_OP and list(node.input) == ["logits"]
    assert list(node.output) == ["keypoints", "keypoint_scores"]
    assert (
        a["plugin_version"].decode() == PLUGIN_VERSION and a["plugin_namespace"].decode() == PLUGIN_NAMESPACE
    )
    assert a["mode"] == b"probmap" and a["normalize"] == 1 and a["temperature"] == 0.5
    np.testing.assert_allclose(a["sigmas"], np.float32(COCO_SIGMAS))
    shapes = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in out.graph.output
    }
    assert shapes == {"presence": ["N", 17], "keypoints": ["N", 17, 2], "keypoint_scores": ["N", 17]}
    assert [o.name for o in model.graph.output] == ["logits", "presence"]  # input model untouched


def test_heatmap_and_probmaps_variants():
    out = add_decode_plugin(_net(("heatmaps",)), "heatmap", keep_maps=True)
    (node,) = plugin_nodes(out)
    assert _attrs(node)["mode"] == b"heatmap" and "sigmas" not in _attrs(node)
    assert "heatmaps" in [o.name for o in out.graph.output]
    out = add_decode_plugin(_net(("probmaps",)), "probmap")
    assert _attrs(plugin_nodes(out)[0])["normalize"] == 0


def test_attribute_names_are_fields_the_cpp_creators_accept():
    decode = add_decode_plugin(_net(("logits",)), "probmap")
    sm = add_sparsemax_plugin(_net(("logits",)))
    plugin_keys = {"plugin_version", "plugin_namespace"}
    assert set(_attrs(plugin_nodes(decode)[0])) - plugin_keys <= _cpp_fields("decode_plugin.cpp")
    assert set(_attrs(plugin_nodes(sm)[0])) - plugin_keys <= _cpp_fields("sparsemax_plugin.cpp")
    common = (KERNELS_DIR / "plugin" / "plugin_common.h").read_text()
    for name in (DECODE_OP, SPARSEMAX_OP, PLUGIN_NAMESPACE):
        assert f'"{name}"' in common


def test_regions_are_named_outputs_with_the_nominal_masses():
    """The calibrated nominal masses (not the reported ones) go to the plugin; the region
    outputs are named graph outputs [N,K,Q] and [N,K,Q,5]; the attributes are C++ fields."""
    spec = RegionSpec((0.5, 0.9), (0.62, 0.95), 1.5)
    out = add_decode_plugin(_net(("logits",)), "probmap", regions=spec)
    (node,) = plugin_nodes(out)
    a = _attrs(node)
    assert list(node.output) == ["keypoints", "keypoint_scores", "region_pixels", "region_ellipses"]
    np.testing.assert_allclose(a["masses"], [0.62, 0.95], rtol=1e-6)
    assert a["region_sigma"] == 1.5
    assert set(a) - {"plugin_version", "plugin_namespace"} <= _cpp_fields("decode_plugin.cpp")
    shapes = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in out.graph.output
    }
    assert shapes["region_pixels"] == ["N", 17, 2] and shapes["region_ellipses"] == ["N", 17, 2, 5]
    assert "logits" not in shapes  # the maps stay on the device
    with pytest.raises(ValueError, match="probability-map head"):
        add_decode_plugin(_net(("heatmaps",)), "heatmap", regions=spec)
    with pytest.raises(ValueError, match="1 to 4 masses"):
        add_decode_plugin(_net(("logits",)), "probmap", regions=RegionSpec((0.5,), (0.5, 0.6)))


def test_region_spec_follows_the_manifest_calibration():
    """Uncalibrated: nominal = reported masses. Calibrated: the coverage map's inverse and blur."""
    assert region_spec({}) == RegionSpec((0.5, 0.9), (0.5, 0.9), 0.0)
    cov = {"nominal": [0.2, 0.4, 0.6, 0.8, 1.0], "coverage": [0.1, 0.3, 0.5, 0.7, 1.0], "sigma": 2.0}
    spec = region_spec({"credible": {"fitted": True, "coverage_map": cov}}, (0.5, 0.7))
    assert spec.masses == (0.5, 0.7) and spec.sigma == 2.0
    np.testing.assert_allclose(spec.nominal, (0.6, 0.8))
    assert spec.to_json() == {"masses": [0.5, 0.7], "nominal": list(spec.nominal), "sigma": 2.0}


def test_sparsemax_node_and_default_export_stays_standard():
    model = _net(("logits",))
    out = add_sparsemax_plugin(model)
    (node,) = plugin_nodes(out)
    assert node.op_type == SPARSEMAX_OP and list(node.output) == ["probmaps"]
    assert [o.name for o in out.graph.output] == ["presence", "probmaps"]
    assert plugin_nodes(model) == []
    sess = open_session(model.SerializeToString())
    assert [o.name for o in sess.get_outputs()] == ["logits", "presence"]


def test_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="'logits' or 'probmaps'"):
        add_decode_plugin(_net(("heatmaps",)), "probmap")
    with pytest.raises(ValueError, match="needs a 'heatmaps' output"):
        add_decode_plugin(_net(("logits",)), "heatmap")
    with pytest.raises(ValueError, match="sigmas of length 17"):
        add_decode_plugin(_net(("logits",)), "probmap", sigmas=[0.1] * 5)
    with pytest.raises(ValueError, match="head_kind"):
        add_decode_plugin(_net(("logits",)), "no-such-head")
    with pytest.raises(ValueError, match="once"):
        add_decode_plugin(add_decode_plugin(_net(("logits",)), "probmap"), "probmap")
    flat = _net(("logits",))
    flat.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 17, 3072]))
    with pytest.raises(ValueError, match=r"logits must be \[N,K,H,W\], got dims \['N', 17, 3072\]"):
        add_decode_plugin(flat, "probmap")


# ---- SimCC heads: DynPoseSimCCDecode reads both rows ----


@pytest.fixture
def simcc_registered(monkeypatch) -> str:
    """The SimCC head kind in the registry, as the RTMPose architecture registers it (the real
    decoder; removed again after the test)."""
    monkeypatch.setitem(registry.DECODERS, SIMCC.kind, SimCCDecoder())
    return SIMCC.kind


@pytest.fixture(scope="module")
def simcc_onnx(tmp_path_factory) -> onnx.ModelProto:
    return onnx.load(str(export_tiny_simcc(tmp_path_factory.mktemp("simcc") / "tiny_simcc.onnx")))


def _shapes(model: onnx.ModelProto) -> dict:
    return {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }


def test_simcc_head_gets_the_two_input_fused_decode(simcc_registered, simcc_onnx):
    assert _shapes(simcc_onnx) == {"simcc_x": ["N", 17, WX], "simcc_y": ["N", 17, HY]}
    out = add_decode_plugin(simcc_onnx, simcc_registered)
    (node,) = plugin_nodes(out)
    a = _attrs(node)
    assert node.op_type == SIMCC_DECODE_OP == "DynPoseSimCCDecode"
    assert list(node.input) == ["simcc_x", "simcc_y"]  # x rows first: the plugin's input order
    assert list(node.output) == ["keypoints", "keypoint_scores"]
    assert a == {"plugin_version": b"1", "plugin_namespace": b"dynpose", "split_ratio": 2.0}
    # only keypoints and scores leave the engine; the dynamic batch carries over
    assert _shapes(out) == {"keypoints": ["N", 17, 2], "keypoint_scores": ["N", 17]}
    assert set(_attrs(node)) - {"plugin_version", "plugin_namespace"} <= _cpp_fields(
        "simcc_decode_plugin.cpp"
    )
    common = (KERNELS_DIR / "plugin" / "plugin_common.h").read_text()
    assert f'"{SIMCC_DECODE_OP}"' in common
    kept = add_decode_plugin(simcc_onnx, simcc_registered, keep_maps=True)
    assert list(_shapes(kept)) == ["simcc_x", "simcc_y", "keypoints", "keypoint_scores"]
    assert list(_shapes(simcc_onnx)) == ["simcc_x", "simcc_y"]  # input model untouched


def test_simcc_surgery_leaves_the_net_itself_intact(simcc_registered, simcc_onnx):
    """Everything before the fused node is the exported net: with the node removed and the rows
    put back as outputs, ONNX Runtime gives the original rows, which decode as decode_simcc."""
    fused = add_decode_plugin(simcc_onnx, simcc_registered)
    body = onnx.ModelProto()
    body.CopyFrom(fused)
    keep = [n for n in body.graph.node if n.op_type != SIMCC_DECODE_OP]
    del body.graph.node[:]
    body.graph.node.extend(keep)
    del body.graph.output[:]
    body.graph.output.extend(simcc_onnx.graph.output)
    x = np.random.default_rng(0).normal(size=(3, 3, 256, 192)).astype(np.float32)
    want = open_session(simcc_onnx.SerializeToString()).run(None, {"input": x})
    got = open_session(body.SerializeToString()).run(None, {"input": x})
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_simcc_errors_say_what_to_fix(simcc_registered, simcc_onnx):
    only_x = onnx.ModelProto()
    only_x.CopyFrom(simcc_onnx)
    del only_x.graph.output[1]
    with pytest.raises(
        ValueError, match=r"needs a 'simcc_x' \+ 'simcc_y' output; the model has \['simcc_x'\]"
    ):
        add_decode_plugin(only_x, simcc_registered)
    bad_k = onnx.ModelProto()
    bad_k.CopyFrom(simcc_onnx)
    bad_k.graph.output[1].CopyFrom(helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, ["N", 16, HY]))
    with pytest.raises(ValueError, match="simcc_x has K=17 rows but simcc_y K=16"):
        add_decode_plugin(bad_k, simcc_registered)
    flat = onnx.ModelProto()
    flat.CopyFrom(simcc_onnx)
    flat.graph.output[0].CopyFrom(helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["N", 17 * WX]))
    with pytest.raises(ValueError, match=r"must be \[N,K,bins\]"):
        add_decode_plugin(flat, simcc_registered)
