"""Float fallback by measured output drift: keep the few blocks float that the answer needs.

Why: which layers of a network cannot take INT8 is a property of the trained
weights and the data, not of the op types, so no fixed rule finds them. On
YOLO11n-pose with ORT's CPU flavour (7-bit weights, every op quantized) the
float tail and the keypoint branches left 1.10 px of keypoint drift on
coco-mini; a scan of its 24 top-level blocks, one float at a time, found one
(``model.22``, the neck's C3k2 at stride 32, whose anchors give 81 % of the
confident keypoints there) that alone brings it to 0.82 px while every other
block moves it by under 0.1 px (docs/results/2026-12-detector.md). The search here
is what TensorRT users know from Polygraphy's and ModelOpt's precision
debugging, reduced to what a build can afford: greedy, one block at a time,
stopping at the budget.

* :func:`module_groups`: the graph's nodes grouped by their exporter
  scope (``/model.22/...`` -> ``model.22``; a node without a scope is its own
  group), so a trial keeps a whole block float, never half a residual.
* :func:`output_drift`: mean box-corner and keypoint error of a YOLO output
  against the fp32 output on confident anchors, in detector-input pixels.
* :func:`keypoint_drift`: the same measure for a pose net: mean keypoint
  displacement against fp32 in crop-input pixels, both outputs decoded through
  the head registry (so heatmap, probability-map and SimCC heads alike), on the
  confident keypoints.
* :func:`fit_fallback`: greedy search over the groups with callables for
  "quantize with these nodes float" and "drift of that model", so the same
  search serves any flavour and any measure. Trials reuse the calibration
  cache, so each costs one quantization pass and a few frames (~2 s here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

_SCOPE = re.compile(r"^/([^/]+)/(?:([^/]+)/)?")


def module_groups(model: onnx.ModelProto, skip: Iterable[str] = ()) -> dict[str, list[str]]:
    """Node names per exporter block, ``skip`` left out: ``/model.22/cv1/conv/Conv`` -> ``model.22``
    (Ultralytics, timm's ``/stages.2/...``); when the first scope level has under 4 blocks (one
    wrapper, e.g. ``/backbone/layer3/...``) the first two levels name the block. Constants and
    Identity nodes (the exporter's aliases of shared weights, unscoped: RTMPose-t has 28) compute
    nothing a quantizer touches, so they form no group and cost no trial."""
    skipped = set(skip)
    scoped = [
        (n.name, _SCOPE.match(n.name))
        for n in model.graph.node
        if n.name and n.name not in skipped and n.op_type not in ("Constant", "Identity")
    ]
    two = len({m.group(1) for _, m in scoped if m}) < 4
    groups: dict[str, list[str]] = {}
    for name, m in scoped:
        key = name if m is None else (f"{m.group(1)}/{m.group(2)}" if two and m.group(2) else m.group(1))
        groups.setdefault(key, []).append(name)
    return groups


def output_drift(ref: np.ndarray, got: np.ndarray, layout, cls: int = 0, score: float = 0.5) -> float:
    """Mean error in input px on anchors with fp32 score >= ``score``: keypoints (visible ones) when the
    model has them, else box corners; the larger of the two when both."""
    from runtime.detectors.yolo import candidates, cxcywh_to_xyxy

    rb, rs, rk = candidates(ref, layout, cls)
    ob, _, ok = candidates(got, layout, cls)
    sel = rs >= score
    if not sel.any():
        return 0.0
    box = float(np.abs(cxcywh_to_xyxy(ob[sel]) - cxcywh_to_xyxy(rb[sel])).mean())
    if rk is None:
        return box
    vis = rk[sel][..., 2] >= 0.5 if rk.shape[-1] > 2 else np.ones(rk[sel].shape[:2], bool)
    err = np.linalg.norm(ok[sel][..., :2] - rk[sel][..., :2], axis=-1)[vis]
    return max(box, float(err.mean()) if err.size else 0.0)


#: share of the fp32 keypoints (highest scores first) a pose net's drift is measured on
CONFIDENT_SHARE = 0.5


def keypoint_drift(
    head: str,
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    input_hw: tuple[int, int],
    confident: float = CONFIDENT_SHARE,
) -> float:
    """Mean keypoint displacement of ``got`` against ``ref`` (raw outputs of one pose net on the same
    crops) in input pixels, over the ``confident`` share of keypoints with the highest fp32 scores.

    Why in input pixels: a heatmap head's grid is a quarter of the input, a SimCC head's is the input
    itself, so one budget means the same for both. Why the confident keypoints: on a flat map (a
    joint the net does not see) the argmax is arbitrary and flips with any rounding, which would make
    the search chase noise; those keypoints carry no answer at any precision. A non-finite decode
    where fp32 is finite counts as infinite drift.
    """
    from runtime.heads.base import DecodeContext
    from runtime.heads.registry import decoder_for

    ctx = DecodeContext(input_hw=(int(input_hw[0]), int(input_hw[1])))
    a = decoder_for(head, ref).decode(ref, ctx)
    b = decoder_for(head, got).decode(got, ctx)
    scale = np.array([input_hw[1] / a.grid_hw[1], input_hw[0] / a.grid_hw[0]], np.float64)
    d = np.linalg.norm((np.asarray(b.coords, np.float64) - a.coords) * scale, axis=-1)
    ok = np.isfinite(a.coords).all(-1)
    if not ok.any():
        return 0.0
    s = np.asarray(a.scores, np.float64)
    sel = ok & (s >= np.quantile(s[ok], 1.0 - confident))
    d = d[sel]
    return float(d.mean()) if np.isfinite(d).all() else math.inf


@dataclass
class Fallback:
    """What the search kept float and what each step measured."""

    budget: float
    drift_before: float
    drift: float
    groups: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    trials: int = 0

    @property
    def met(self) -> bool:
        return self.drift <= self.budget

    def as_dict(self) -> dict:
        return {
            "budget_px": self.budget if math.isfinite(self.budget) else None,
            "drift_before_px": round(self.drift_before, 4),
            "drift_px": round(self.drift, 4),
            "float_groups": self.groups,
            "float_nodes": len(self.nodes),
            "trials": self.trials,
            "met": self.met,
        }


def fit_fallback(
    groups: dict[str, list[str]],
    quantize: Callable[[set[str]], object],
    drift: Callable[[object], float],
    budget: float,
    max_groups: int = 3,
    log: Callable[[str], None] | None = None,
) -> tuple[Fallback, object]:
    """Greedy: while over ``budget``, try every remaining group float, keep the one that lowers the drift
    most; stop at the budget, after ``max_groups`` groups, or when no group helps.

    ``quantize(extra_float_nodes)`` builds a model and returns it (a path), ``drift(model)`` measures
    it. Returns the result and the chosen model (the last one built for it is rebuilt, so the caller's
    file holds exactly the chosen graph).
    """
    model = quantize(set())
    first = drift(model)
    fb = Fallback(budget, first, first, trials=1)
    if fb.met:
        return fb, model
    while not fb.met and len(fb.groups) < max_groups:
        trials = {}
        for name, nodes in groups.items():
            if name in fb.groups:
                continue
            trials[name] = drift(quantize(fb.nodes | set(nodes)))
            fb.trials += 1
        if not trials:
            break
        best = min(trials, key=trials.__getitem__)
        if trials[best] >= fb.drift:
            break
        fb.groups.append(best)
        fb.nodes |= set(groups[best])
        fb.drift = trials[best]
        if log:
            log(
                f"float fallback: {best} ({len(groups[best])} nodes) -> drift {fb.drift:.3f} px "
                f"(budget {budget:g})"
            )
    model = quantize(fb.nodes)
    return fb, model


def quantize_within(
    quantize: Callable[[set[str]], Any],
    groups: dict[str, list[str]],
    drift: Callable[[Any], float] | None,
    budget: float,
    flag: str,
    log: Callable[[str], None],
    what: str = "drift",
) -> tuple[Fallback | None, Any]:
    """The quantized model, through the measured float fallback when ``drift`` measures it (None:
    no reference, the plain quantized model). One place for the search and its warning, shared by
    the detector (``--det-drift-px``) and the pose nets (``--pose-drift-px``)."""
    if drift is None:
        return None, quantize(set())
    fb, model = fit_fallback(groups, quantize, drift, budget, log=log)
    if not fb.met:
        log(
            f"WARNING {what} {fb.drift:.2f} px is over {flag} {budget:g} after {len(fb.groups)} float "
            "blocks (see the manifest's 'fallback')"
        )
    return fb, model
