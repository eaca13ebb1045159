"""Every TensorRT version difference the builder and runtime care about, in one place.

10.3 (JetPack 6.1/6.2) is the floor, 11.x must not break. What changed:

- 11.x removed weak typing: no ``BuilderFlag.FP16/INT8/BF16/FP8/INT4``, no
  ``OBEY/PREFER_PRECISION_CONSTRAINTS``, no INT8 calibrator, no
  ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``. GPU engines never use any
  of them: precision comes from the ONNX tensor types (Q/DQ INT8 or FP16 ONNX)
  in a strongly typed network on every version. Only a 10.x DLA build sets
  ``FP16``/``INT8`` (below), and only where :func:`dla_typing` says "weak".
- ``STRONGLY_TYPED`` is required on 10.x and accepted-but-ignored on 11.x, so
  :func:`network_flags` sets it when the enum still has it.
- ``Builder.platform_has_fast_fp16/int8`` exist only in 10.x: not used.
- DLA (:func:`dla_typing`): 10.x DLA takes only *weakly* typed networks (FP16
  through ``BuilderFlag.FP16``; INT8 of a Q/DQ model through ``BuilderFlag.INT8``
  as well), with GPU fallback; a strongly typed network silently falls back to
  the GPU layer by layer. 11.0-11.4.0 have no DLA on Jetson. From 11.4.1
  (JetPack 7.2.2+) DLA takes strongly typed networks (11.x has no weak typing).
  ``Builder.num_DLA_cores`` reports 0 where absent, and the placement is read
  back from the built engine (:func:`count_dla_layers`) before ``dla_core`` is
  recorded.
- trtexec: 11.x removed ``--fp16/--int8/--best``; ``--stronglyTyped`` is a
  no-op there and required on 10.x for GPU engines. On 10.3, ``--stronglyTyped``
  with ``--useDLACore`` cannot build: trtexec turns ``--fp16/--int8`` off for a
  strongly typed network, then adds the FP16 and prefer-precision flags itself
  because of ``--useDLACore``, which the strongly typed network rejects
  (NVIDIA/TensorRT#4228, #4253; trtexec ``sampleOptions.cpp`` /
  ``sampleEngines.cpp`` at v10.3.0). So DLA lines follow :func:`dla_typing`.
- Engine provenance compares MAJOR.MINOR.PATCH (:func:`same_trt_release`).

The module is import-light: functions take the ``tensorrt`` module as an
argument so tests can hand in the harness's checked stand-in.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from runtime.backends.trt_rules import make_error_recorder, same_trt_release, trt_release  # noqa: F401  (re-exported)

FLOOR = (10, 3)
# Builder flags gone in 11.x: only a 10.x DLA build sets FP16/INT8 (dla_precision_flags).
REMOVED_IN_11 = (
    "FP16",
    "INT8",
    "BF16",
    "FP8",
    "INT4",
    "OBEY_PRECISION_CONSTRAINTS",
    "PREFER_PRECISION_CONSTRAINTS",
)


# DLA typing per release (see the module docstring). 11.0 <= v < 11.4.1: no DLA at all.
WEAK_DLA_BELOW = (11, 0, 0)
STRONG_DLA_FROM = (11, 4, 1)

# ConvTranspose weight Q/DQ axis for TensorRT (calib/quantize.py int8_trt follows it).
# ONNX stores ConvTranspose weights as [C_in, C_out/group, kH, kW]; ONNX Runtime's
# quantizer quantizes them per output channel (axis 1). TensorRT's deconvolution
# kernels take per-channel weight scales on axis 0 (per *input* channel) only: NVIDIA's
# own QAT toolkit sets QUANT_DESC_8BIT_CONVTRANSPOSE{1,2,3}D_WEIGHT_PER_CHANNEL to
# axis=(0) (NVIDIA/TensorRT tools/pytorch-quantization/pytorch_quantization/
# tensor_quant.py, "Predefined descriptors", commit 147005ff), changed from axis 1 after
# NVIDIA/TensorRT#1694 ("quantization toolkit misaligned with TRT implementation for
# convTranspose ... try quant axis 0 for deconv"), and the maintainers state in
# NVIDIA/TensorRT#2380: "the kernels assume per-input-channel quant for ConvTranspose
# ... We don't support per-output-channel quant for ConvTranspose".
DECONV_WEIGHT_AXIS = 0


def version_tuple(trt: ModuleType) -> tuple[int, ...]:
    return trt_release(trt.__version__) or (0, 0, 0)


def dla_typing(version: tuple[int, ...] | str) -> str | None:
    """How a network must be typed to run on DLA under TensorRT ``version``.

    "weak": 10.x, network without STRONGLY_TYPED plus precision builder flags;
    "strong": >= 11.4.1, the usual strongly typed network; None: no DLA in this release.
    """
    v = trt_release(version) if isinstance(version, str) else tuple(version)
    if v is None:
        return None
    if v < WEAK_DLA_BELOW:
        return "weak"
    return "strong" if v >= STRONG_DLA_FROM else None


def dla_precision_flags(precision: str, typing_: str | None) -> list[str]:
    """``BuilderFlag`` names a DLA build sets besides GPU_FALLBACK.

    Weak typing: FP16 always (DLA computes FP16/INT8 only; layers DLA cannot take in
    INT8 run in FP16), plus INT8 for a Q/DQ (int8) network. Strong typing: none.
    """
    if typing_ != "weak":
        return []
    return ["FP16", "INT8"] if precision == "int8" else ["FP16"]


def check_supported(trt: ModuleType) -> None:
    """Refuse TensorRT older than the floor with a message that names the fix."""
    if version_tuple(trt)[:2] < FLOOR:
        raise SystemExit(
            f"error: TensorRT {trt.__version__} is older than 10.3; "
            "flash JetPack 6.1+ (TensorRT 10.3) or install TensorRT >= 10.3"
        )


def network_flags(trt: ModuleType, weakly_typed: bool = False) -> int:
    """Creation flags: strongly typed (explicit batch) on every version, except a 10.x
    DLA network, which must be weakly typed (:func:`dla_typing`)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if weakly_typed:
        if flag is None:
            raise ValueError(
                f"TensorRT {trt.__version__} has no weak typing; DLA builds are strongly typed here"
            )
        return 0
    return 0 if flag is None else 1 << int(flag)


def num_dla_cores(builder: object) -> int:
    """DLA cores this builder can target (0 on dGPU, Orin Nano, and 11.0-11.4.0 on Jetson)."""
    return int(getattr(builder, "num_DLA_cores", 0) or 0)


def parser_errors(parser: object) -> list[str]:
    return [str(parser.get_error(i)) for i in range(parser.num_errors)]


def trtexec_precision_args(precision: str, dla_typing_: str | None = None) -> list[str]:
    """GPU and strongly typed DLA: ``--stronglyTyped`` only (the ONNX's tensor types carry the
    precision; 11.x has no ``--fp16/--int8``). Weakly typed DLA (10.x): the builder flags
    instead, never ``--stronglyTyped`` (see the module docstring for trtexec 10.3)."""
    if dla_typing_ == "weak":
        return ["--" + f.lower() for f in dla_precision_flags(precision, "weak")]
    return ["--stronglyTyped"]


def trtexec_version(banner_number: int) -> tuple[int, int, int]:
    """trtexec's banner ``[TensorRT v100300]`` encodes MAJOR*10000 + MINOR*100 + PATCH."""
    return banner_number // 10000, banner_number // 100 % 100, banner_number % 100


# -- DLA placement ------------------------------------------------------------------------
def count_dla_layers(layer_info: str | dict[str, Any]) -> int | None:
    """Layers of an engine that run on DLA, from the engine inspector's JSON
    (``get_engine_information(LayerInformationFormat.JSON)`` or trtexec
    ``--exportLayerInfo``); None when the JSON has no per-layer detail
    (built without ``ProfilingVerbosity.DETAILED``).

    With DETAILED verbosity each layer is an object; a DLA subgraph is one layer whose
    type names DLA (the builder's engine-layer log prints it as ``Layer(DLA):
    {ForeignNode[...]}``, the JSON as ``"LayerType": "DLA"``; a GPU Myelin subgraph is
    also a ForeignNode, so the name alone proves nothing). Hand-written because no
    library reads TensorRT's layer JSON; the device check must confirm it on a Jetson.
    """
    info = json.loads(layer_info) if isinstance(layer_info, str) else layer_info
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        return None
    keys = ("LayerType", "TacticName", "Origin")
    return sum(any("dla" in str(layer.get(k, "")).lower() for k in keys) for layer in layers)
