"""RTMPose-t/s/m/l: a CSPNeXt backbone (stride-32 map only) with the RTMCC SimCC head.

Factors and head width per variant as in MMPose's configs
(``configs/body_2d_keypoint/rtmpose/coco/rtmpose-{t,s,m,l}_8xb256-420e_coco-256x192.py``:
``deepen_factor``/``widen_factor``, ``head.in_channels``); m and l also come at 384x288
(``..._coco-384x288.py``), where only the head's feature size and bin counts change.

``gmacs``/``params_m`` are MMPose's model-zoo figures (``projects/rtmpose/README.md``, "FLOPS(G)"
and "Params(M)"; MMPose's FLOPs are multiply-accumulates, as build.flops counts them).
``extra["coco_ap"]`` is the COCO val AP MMPose publishes for the config (person-detector boxes):
the COCO-only training for 256x192, the AIC+COCO training for 384x288 (no COCO-only release).
"""

from __future__ import annotations

from runtime.heads.registry import SIMCC

from .cspnext import CSPNeXt
from .registry import ModelSpec, register

# name: (deepen, widen, input (H, W), GFLOPs, params M, COCO val AP)
VARIANTS: dict[str, tuple[float, float, tuple[int, int], float, float, float]] = {
    "rtmpose-t": (0.167, 0.375, (256, 192), 0.36, 3.34, 0.682),
    "rtmpose-s": (0.33, 0.5, (256, 192), 0.68, 5.47, 0.716),
    "rtmpose-m": (0.67, 0.75, (256, 192), 1.93, 13.59, 0.746),
    "rtmpose-l": (1.0, 1.0, (256, 192), 4.16, 27.66, 0.758),
    "rtmpose-m-384": (0.67, 0.75, (384, 288), 4.33, 13.72, 0.770),
    "rtmpose-l-384": (1.0, 1.0, (384, 288), 9.35, 27.79, 0.773),
}


def _backbone(deepen: float, widen: float) -> CSPNeXt:
    return CSPNeXt(deepen, widen, out_indices=(4,))


def _register() -> None:
    for name, (deepen, widen, hw, gflops, params, ap) in VARIANTS.items():
        register(
            ModelSpec(
                name,
                lambda d=deepen, w=widen: _backbone(d, w),
                out_channels=int(1024 * widen),
                feat_hw=(hw[0] // 32, hw[1] // 32),
                input_hw=hw,
                heads=(SIMCC,),
                gmacs=gflops,
                params_m=params,
                notes=f"RTMPose (MMPose projects/rtmpose, {hw[0]}x{hw[1]}), CSPNeXt + RTMCC SimCC head",
                extra={"coco_ap": ap, "reference_head": SIMCC},
            )
        )


_register()
