"""Every TensorRT version difference the builder and runtime care about, in one place.

10.3 (JetPack 6.1/6.2) is the floor, 11.x must not break. What changed:

- 11.x removed weak typing: no ``BuilderFlag.FP16/INT8/BF16/FP8/INT4``, no
  ``OBEY/PREFER_PRECISION_CONSTRAINTS``, no INT8 calibrator, no
  ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``. We never use any of them:
  precision comes from the ONNX tensor types (Q/DQ INT8 or FP16 ONNX) in a
  strongly typed network on every version.
- ``STRONGLY_TYPED`` is required on 10.x and accepted-but-ignored on 11.x, so
  :func:`network_flags` sets it when the enum still has it.
- ``Builder.platform_has_fast_fp16/int8`` exist only in 10.x: not used.
- DLA: 10.3 on JetPack 6 has it; 11.0-11.4.0 have no DLA on Jetson; 11.4.1+
  again on JetPack 7.2.2+. ``Builder.num_DLA_cores`` reports 0 where absent,
  so asking it is the one portable test.
- trtexec: 11.x removed ``--fp16/--int8/--best``; ``--stronglyTyped`` is a
  no-op there and required on 10.x, so build plans always pass it.

The module is import-light: functions take the ``tensorrt`` module as an
argument so tests can hand in the harness's checked stand-in.
"""
from __future__ import annotations

import re
from types import ModuleType

FLOOR = (10, 3)
# Builder flags that must never appear in our code paths (gone in 11.x).
REMOVED_IN_11 = ("FP16", "INT8", "BF16", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS",
                 "PREFER_PRECISION_CONSTRAINTS")


def version_tuple(trt: ModuleType) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", trt.__version__)[:3])


def check_supported(trt: ModuleType) -> None:
    """Refuse TensorRT older than the floor with a message that names the fix."""
    if version_tuple(trt)[:2] < FLOOR:
        raise SystemExit(f"error: TensorRT {trt.__version__} is older than 10.3; "
                         "flash JetPack 6.1+ (TensorRT 10.3) or install TensorRT >= 10.3")


def network_flags(trt: ModuleType) -> int:
    """Creation flags for a strongly typed, explicit-batch network on any supported version."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def num_dla_cores(builder: object) -> int:
    """DLA cores this builder can target (0 on dGPU, Orin Nano, and 11.0-11.4.0 on Jetson)."""
    return int(getattr(builder, "num_DLA_cores", 0) or 0)


def parser_errors(parser: object) -> list[str]:
    return [str(parser.get_error(i)) for i in range(parser.num_errors)]


def trtexec_precision_args(precision: str) -> list[str]:
    """No ``--fp16/--int8`` on any version: the ONNX's tensor types carry the precision."""
    return ["--stronglyTyped"]
