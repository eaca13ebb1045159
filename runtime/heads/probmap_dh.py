"""The double probability map (build.models.double_head, ProbPose-s-DH): the probability-map decode,
then keypoints whose presence says "outside the window" from the wider outer map
(runtime.heads.double_decode). The manifest records it as a probmap head; its
``outer_probmaps`` output tells the registry which decoder reads it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from runtime.heads import probmap
from runtime.heads.base import DecodeContext, HeadSpec, NetDecode, Outputs
from runtime.heads.double_decode import merge_double

OUTER = "outer_probmaps"

SPEC = replace(probmap.SPEC, kind="probmap-dh", marker_output=OUTER)


class DoubleProbMapDecoder:
    spec: HeadSpec = SPEC

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode:
        net = probmap.ProbMapDecoder().decode(outs, ctx)
        coords, scores = merge_double(
            net.coords, net.scores, np.asarray(outs[OUTER]), net.presence, ctx.presence_threshold
        )
        return NetDecode(coords.astype(np.float32), scores.astype(np.float32), net.presence, net.grid_hw)
