"""What every head decoder shares: its spec, its input and output types, the presence scaling.

A head decoder turns one net's named outputs into keypoints on a grid laid over the crop
window (``grid_hw`` cells; a heatmap head's grid is its map, a 1-D classification head such
as SimCC would report its bins) plus scores and presence. Mapping the grid to the image is
the assembler's job (runtime.pose.assemble), so the Triton BLS model, which returns grid
coordinates to its clients, and the pipeline read the same decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

F32 = np.float32
K = 17

Outputs = Mapping[str, npt.NDArray[np.generic]]
Floats = npt.NDArray[np.float32]

# The DynPoseDecode plugin's ``mode`` attribute values, in the kernels' enum order
# (kernels/dynpose_rowmath.cuh kModeHeatmap = 0, kModeProbmap = 1).
PLUGIN_MODES = ("heatmap", "probmap")

# The fused-decode plugins' names (libdynpose_plugins.so; the ONNX op TensorRT resolves):
# DynPoseDecode reads one [N,K,H,W] map, DynPoseSimCCDecode two 1-D classifications.
DECODE_PLUGIN, SIMCC_DECODE_PLUGIN = "DynPoseDecode", "DynPoseSimCCDecode"


@dataclass(frozen=True)
class PluginInput:
    """One way a fused-decode TensorRT plugin (build.plugin_nodes) can read this head: the graph
    output it consumes and the node's attributes. ``plugin`` is the op (``DECODE_PLUGIN`` unless
    the head needs another); ``mode`` the decode it runs (DynPoseDecode's ``mode`` attribute).
    ``sigmas`` adds the OKS sigmas and the temperature (the expected-OKS modes).
    ``paired_output`` is a second output the same node reads after ``output`` (SimCC's y-axis
    rows after its x-axis rows) and ``split_ratio`` the SimCC plugin's bins per input pixel."""

    output: str
    mode: str
    normalize: int | None = None
    sigmas: bool = False
    plugin: str = DECODE_PLUGIN
    paired_output: str | None = None
    split_ratio: float | None = None


@dataclass(frozen=True)
class HeadSpec:
    """What the rest of the project may ask about a head kind instead of comparing its name.

    ``kind`` is what a config builds; ``manifest_kind`` what the manifest records (and the
    runtime reads) for it; a kind that shares its manifest kind with another is told apart by
    ``marker_output``, an output only it exports. ``map_output`` is the map the host decode
    reads; ``plugin_inputs`` the fused plugin's choices, in order of preference (empty: the
    plugin cannot decode this head). ``probabilistic`` heads output a probability map with
    presence, visibility and predicted OKS (ProbPose): they train with the ProbPose loss and
    report the fields of runtime.heads.probfields and credible regions.
    """

    kind: str
    manifest_kind: str
    map_output: str
    plugin_inputs: tuple[PluginInput, ...] = ()
    probabilistic: bool = False
    marker_output: str | None = None


@dataclass(frozen=True)
class DecodeContext:
    """Per-net decode settings from the manifest: the ``presence`` section, and the net's input
    (H, W), which a head whose outputs do not carry it (the fused SimCC decode returns input
    pixels only) needs to say which grid its coordinates lie on."""

    temperature: float = 1.0
    presence_threshold: float = 0.5
    input_hw: tuple[int, int] = (256, 192)


@dataclass(frozen=True)
class NetDecode:
    """One net's crops decoded: ``coords`` [n,K,2] (x, y) on a ``grid_hw`` grid over the crop
    window, ``scores`` [n,K], ``presence`` [n,K] (1 where the head has none)."""

    coords: Floats
    scores: Floats
    presence: Floats
    grid_hw: tuple[int, int]


class HeadDecoder(Protocol):
    """A head kind's decoder: one module per kind (runtime/heads/<kind>.py), registered in
    runtime.heads.registry."""

    spec: HeadSpec

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode: ...


def scaled_presence(outs: Outputs, n: int, temperature: float) -> Floats:
    """Temperature-scaled presence (calib.presence's fit), 1 where the head has none."""
    if "presence" not in outs:
        return np.ones((n, K), F32)
    p = np.clip(np.asarray(outs["presence"], np.float64), 1e-7, 1 - 1e-7)
    if temperature != 1.0:
        p = 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))
    return p.astype(F32)


def fused_keypoints(outs: Outputs) -> tuple[Floats, Floats] | None:
    """The fused plugin's ``keypoints``/``keypoint_scores`` when the engine has them (then no
    full map reaches the host), else None."""
    if "keypoints" not in outs:
        return None
    return np.asarray(outs["keypoints"], F32), np.asarray(outs["keypoint_scores"], F32)


def grid_of(outs: Outputs, spec: HeadSpec, default: tuple[int, int]) -> tuple[int, int]:
    """The map's (H, W) when it reached the host, else the head's default grid."""
    if spec.map_output in outs:
        shape = np.shape(outs[spec.map_output])
        return int(shape[-2]), int(shape[-1])
    return default
