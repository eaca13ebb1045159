"""Net outputs -> people in image coordinates -> one frame's rows: the one assembler.

The pipeline (runtime.pose.pipeline) and the measurements (measure/net_outputs.py: the sweep
and the precision table decode every crop with both nets once and compose frames per routing
policy) both build results here, so a result field exists in both or in neither. Decoding itself is the head registry's
(runtime.heads.registry); this module adds the crop geometry and the per-frame layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.heads.base import DecodeContext, Outputs
from runtime.heads.grid import heatmap_to_image
from runtime.heads.probfields import ProbExtras, ProbFieldsDecoder
from runtime.heads.registry import decoder_for
from runtime.pose.results import FrameResult

K = 17
Rows = npt.NDArray[np.intp]


@dataclass
class People:
    """One net's crops, one row each: ``keypoints`` [m,K,3] (image x, y, score), ``presence``
    [m,K] and the probability-map fields (``prob.has`` False for heads without them)."""

    keypoints: npt.NDArray[np.float32]
    presence: npt.NDArray[np.float32]
    prob: ProbExtras

    def take(self, rows: slice | npt.NDArray[np.bool_] | Rows) -> People:
        return People(self.keypoints[rows], self.presence[rows], self.prob.take(rows))


def decode_people(
    head: str,
    outs: Outputs,
    centers: npt.NDArray[np.float64],
    scales: npt.NDArray[np.float64],
    ctx: DecodeContext,
    fields: ProbFieldsDecoder,
) -> People:
    """Decode one net's outputs (manifest head ``head``) for crops with these centres and scales."""
    decoder = decoder_for(head, outs)
    net = decoder.decode(outs, ctx)
    xy = heatmap_to_image(net.coords, centers, scales, net.grid_hw)
    kps = np.concatenate([xy, net.scores[..., None]], axis=-1).astype(np.float32)
    prob = fields.new(len(kps))
    fields.fill(prob, np.arange(len(kps)), decoder.spec, outs, net.presence, centers, scales, net.grid_hw)
    return People(kps, net.presence, prob)


class FrameRows:
    """One frame's result arrays (a row per input box) filled net by net."""

    def __init__(self, n: int, masses: tuple[float, ...]) -> None:
        self.keypoints = np.full((n, K, 3), np.nan, np.float32)
        self.presence = np.zeros((n, K), np.float32)
        self.route = np.full(n, -1, np.int8)
        self.router_score = np.full(n, np.nan, np.float32)
        self.prob = ProbExtras.empty(n, masses)

    def put(self, rows: Rows, people: People, large: bool) -> None:
        self.keypoints[rows] = people.keypoints
        self.presence[rows] = people.presence
        self.prob.put(rows, people.prob)
        self.route[rows] = int(large)

    def result(
        self,
        boxes: npt.NDArray[np.floating],
        box_scores: npt.NDArray[np.floating],
        dropped: dict[int, str],
        timings: dict[str, float],
    ) -> FrameResult:
        with np.errstate(over="ignore"):  # a 1e308 box is float32 inf; it was dropped as nan_or_inf anyway
            boxes32 = boxes.astype(np.float32)
        return FrameResult(
            boxes32,
            self.keypoints,
            self.presence,
            self.route,
            self.router_score,
            box_scores.astype(np.float32),
            dropped,
            timings,
            self.prob,
        )
