"""The exporter's plugin option: custom ONNX nodes that TensorRT's parser maps onto
libdynpose_plugins.so (DynPoseDecode, DynPoseSimCCDecode, DynPoseSparsemax).

TensorRT's ONNX parser imports a node whose op_type it does not know through the plugin
registry, using op_type as the plugin name and the ``plugin_version`` /
``plugin_namespace`` attributes; every other attribute becomes a plugin field. The nodes
live in the default domain, as in NVIDIA's own plugin samples, so ONNX Runtime (and
``onnx.checker``) cannot run such a model: the plugin variant is for TensorRT only and
the default export keeps standard ops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from runtime.heads.base import DECODE_PLUGIN, SIMCC_DECODE_PLUGIN, PluginInput
from runtime.heads.credible import DEFAULT_MASSES
from runtime.heads.decode import COCO_SIGMAS
from runtime.heads.probfields import REGION_ELLIPSES, REGION_PIXELS, ProbFieldsDecoder
from runtime.heads.registry import PROBMAP, head_spec, plugin_mode

PLUGIN_NAMESPACE = "dynpose"
PLUGIN_VERSION = "1"
DECODE_OP = DECODE_PLUGIN
SIMCC_DECODE_OP = SIMCC_DECODE_PLUGIN
SPARSEMAX_OP = "DynPoseSparsemax"
KEYPOINTS, KEYPOINT_SCORES = "keypoints", "keypoint_scores"


@dataclass(frozen=True)
class RegionSpec:
    """Credible regions the fused decode computes on the device: for each reported mass
    (``masses``, the runtime's --credible) the map mass the plugin takes (``nominal``, from the
    manifest's coverage calibration) and the calibration's blur (``sigma``, heatmap px)."""

    masses: tuple[float, ...]
    nominal: tuple[float, ...]
    sigma: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The manifest record of the plugin variant (runtime.heads.probfields reads it)."""
        return {"masses": list(self.masses), "nominal": list(self.nominal), "sigma": self.sigma}


def region_spec(manifest: Mapping[str, Any], masses: Sequence[float] = DEFAULT_MASSES) -> RegionSpec:
    """The regions for ``masses`` under the manifest's coverage calibration (identity without one),
    from the same code the runtime uses on the host (ProbFieldsDecoder), so the two agree."""
    dec = ProbFieldsDecoder(dict(manifest), masses)
    return RegionSpec(dec.masses, dec.nominal, float(dec.coverage.sigma) if dec.coverage else 0.0)


def _graph_output(model: onnx.ModelProto, name: str) -> onnx.ValueInfoProto | None:
    return next((o for o in model.graph.output if o.name == name), None)


def _dims(vi: onnx.ValueInfoProto) -> list:
    """Dims of a value as ints or dim_param strings (None where unknown)."""
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def _plugin_attrs(**fields) -> dict:
    return {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE, **fields}


def _sources(c: PluginInput) -> list[str]:
    """The graph outputs a plugin choice reads, in the node's input order."""
    return [c.output] + ([c.paired_output] if c.paired_output else [])


def _decode_source(head_kind: str, names: list[str]) -> PluginInput:
    """The first of the head's plugin inputs (runtime.heads.registry) whose outputs the model has."""
    try:
        choices = head_spec(head_kind).plugin_inputs
    except ValueError as e:
        raise ValueError(f"head_kind: {e}") from None
    if not choices:
        raise ValueError(f"head_kind {head_kind!r}: the decode plugin cannot decode this head")
    pick = next((c for c in choices if all(s in names for s in _sources(c))), None)
    if pick is None:
        wanted = " or ".join(" + ".join(repr(s) for s in _sources(c)) for c in choices)
        raise ValueError(
            f"{head_kind} decode needs a {wanted} output; the model has {names}. Export the net with that output"
        )
    return pick


def _map_attrs(
    model: onnx.ModelProto, pick: PluginInput, sig: np.ndarray, temperature: float
) -> tuple[dict, list]:
    """DynPoseDecode's attributes for one [N,K,H,W] map, and the map's dims."""
    dims = _map_dims(model, pick.output, sig)
    attrs: dict = {"mode": pick.mode}
    if pick.normalize is not None:
        attrs["normalize"] = pick.normalize
    if pick.sigmas:
        attrs.update(sigmas=[float(s) for s in sig], temperature=float(temperature))
    return attrs, dims


def _simcc_attrs(model: onnx.ModelProto, pick: PluginInput) -> tuple[dict, list]:
    """DynPoseSimCCDecode's attributes, and the x rows' dims once both rows agree on [N,K]."""
    x, y = (_dims(_graph_output(model, s)) for s in _sources(pick))
    if len(x) != 3 or len(y) != 3:
        raise ValueError(f"{pick.output} and {pick.paired_output} must be [N,K,bins], got dims {x} and {y}")
    if isinstance(x[1], int) and isinstance(y[1], int) and x[1] != y[1]:
        raise ValueError(
            f"{pick.output} has K={x[1]} rows but {pick.paired_output} K={y[1]}; export both from one head"
        )
    return ({} if pick.split_ratio is None else {"split_ratio": float(pick.split_ratio)}), x


def _region_attrs(head_kind: str, attrs: dict, regions: RegionSpec | None) -> list[str]:
    """DynPoseDecode's region fields (added to ``attrs``) and the outputs they add."""
    if regions is None or not regions.masses:
        return []
    if attrs["mode"] != plugin_mode(PROBMAP):
        raise ValueError(f"head_kind {head_kind!r}: credible regions need a probability-map head")
    if not 1 <= len(regions.nominal) <= 4 or len(regions.nominal) != len(regions.masses):
        raise ValueError(f"regions: 1 to 4 masses, one nominal mass each; got {regions}")
    attrs.update(masses=[float(q) for q in regions.nominal], region_sigma=float(regions.sigma))
    return [REGION_PIXELS, REGION_ELLIPSES]


def _map_dims(model: onnx.ModelProto, src: str, sig: np.ndarray) -> list:
    """The source map's [N,K,H,W] dims, with K matching the sigmas where it is static."""
    dims = _dims(_graph_output(model, src))
    if len(dims) != 4:
        raise ValueError(f"{src} must be [N,K,H,W], got dims {dims}")
    k = dims[1]
    if isinstance(k, int) and k != sig.size:
        raise ValueError(f"{src} has K={k} maps but {sig.size} sigmas were given; pass sigmas of length {k}")
    return dims


def _set_outputs(
    model: onnx.ModelProto, srcs: list[str], dims: list, keep_maps: bool, n_masses: int = 0
) -> None:
    """Graph outputs: the decoded keypoints and scores (and regions) added, the maps dropped unless kept."""
    if not keep_maps:
        keep = [o for o in model.graph.output if o.name not in srcs]
        del model.graph.output[:]
        model.graph.output.extend(keep)
    n = dims[0] if dims[0] is not None else "N"
    k = dims[1]
    model.graph.output.extend(
        [
            helper.make_tensor_value_info(KEYPOINTS, TensorProto.FLOAT, [n, k, 2]),
            helper.make_tensor_value_info(KEYPOINT_SCORES, TensorProto.FLOAT, [n, k]),
        ]
    )
    if n_masses:
        model.graph.output.extend(
            [
                helper.make_tensor_value_info(REGION_PIXELS, TensorProto.FLOAT, [n, k, n_masses]),
                helper.make_tensor_value_info(REGION_ELLIPSES, TensorProto.FLOAT, [n, k, n_masses, 5]),
            ]
        )


def add_decode_plugin(
    model: onnx.ModelProto,
    head_kind: str,
    *,
    sigmas: Sequence[float] = COCO_SIGMAS,
    temperature: float = 1.0,
    keep_maps: bool = False,
    regions: RegionSpec | None = None,
) -> onnx.ModelProto:
    """Return a copy of ``model`` with a fused-decode node producing ``keypoints`` [N,K,2]
    (x, y on the head's grid) and ``keypoint_scores`` [N,K].

    The head kind's registry spec (runtime.heads.registry) says which plugin reads which
    outputs and how: a heatmap head's ``heatmaps`` (DynPoseDecode, MSRA, heatmap pixels); a
    probability-map head's ``logits`` (sparsemax fused in the plugin) or, if the net only has
    ``probmaps``, those; a SimCC head's ``simcc_x`` and ``simcc_y`` (DynPoseSimCCDecode, input
    pixels). With ``keep_maps=False`` the maps are dropped from the graph outputs, so no
    [N,K,64,48] map or SimCC row crosses to the host. ``regions``
    (probability-map heads) adds ``region_pixels`` [N,K,Q] and ``region_ellipses`` [N,K,Q,5]:
    the credible regions of each map, computed in the plugin, so they survive without the maps.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = [o.name for o in out.graph.output]
    if KEYPOINTS in names or KEYPOINT_SCORES in names:
        raise ValueError("model already has keypoints outputs; add the decode plugin once")
    pick = _decode_source(head_kind, names)
    outputs = [KEYPOINTS, KEYPOINT_SCORES]
    if pick.plugin == SIMCC_DECODE_OP:
        if regions is not None and regions.masses:
            raise ValueError(f"head_kind {head_kind!r}: credible regions need a probability-map head")
        attrs, dims = _simcc_attrs(out, pick)
    else:
        attrs, dims = _map_attrs(out, pick, np.asarray(sigmas, dtype=np.float32).reshape(-1), temperature)
        outputs += _region_attrs(head_kind, attrs, regions)
    srcs = _sources(pick)
    node = helper.make_node(pick.plugin, srcs, outputs, name="dynpose_decode", **_plugin_attrs(**attrs))
    out.graph.node.append(node)
    _set_outputs(out, srcs, dims, keep_maps, len(outputs) - 2)
    return out


def add_sparsemax_plugin(
    model: onnx.ModelProto,
    src: str = "logits",
    dst: str = "probmaps",
    *,
    temperature: float = 1.0,
    keep_src: bool = False,
) -> onnx.ModelProto:
    """Return a copy with a DynPoseSparsemax node turning output ``src`` [N,K,H,W] into ``dst``
    (sparsemax over each H*W map), for a probmap net exported with logits only."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    vi = _graph_output(out, src)
    if vi is None:
        raise ValueError(f"model has no output {src!r}; outputs: {[o.name for o in out.graph.output]}")
    if _graph_output(out, dst) is not None:
        raise ValueError(f"model already has an output {dst!r}")
    out.graph.node.append(
        helper.make_node(
            SPARSEMAX_OP,
            [src],
            [dst],
            name="dynpose_sparsemax",
            **_plugin_attrs(temperature=float(temperature), num_axes=2),
        )
    )
    new = helper.make_tensor_value_info(dst, vi.type.tensor_type.elem_type, _dims(vi))
    if not keep_src:
        keep = [o for o in out.graph.output if o.name != src]
        del out.graph.output[:]
        out.graph.output.extend(keep)
    out.graph.output.append(new)
    return out


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The dynpose plugin nodes in a model (what TensorRT will resolve via the registry)."""
    return [n for n in model.graph.node if n.op_type in (DECODE_OP, SIMCC_DECODE_OP, SPARSEMAX_OP)]
