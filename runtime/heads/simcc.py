"""The SimCC head (RTMPose's RTMCC head): one 1-D classification per axis over bins
``split_ratio`` times finer than the input pixels.

The decode follows MMPose's ``SimCCLabel.decode`` with the settings every RTMPose config uses
(``use_dark=False``, no softmax): the argmax bin per axis divided by the split ratio gives the
keypoint in input pixels; its score is the smaller of the two axes' maxima; a keypoint whose
score is not above zero gets location -1 on both axes before the division (as
``get_simcc_maximum`` marks it). Ties go to the first bin (numpy's argmax, as MMPose's).
Rows holding NaN or +-inf decode to (NaN, NaN) with score 0, the project's rule for invalid
maps (runtime.heads.decode). Coordinates are returned on the input-pixel grid (``input_hw``)
so the assembler maps them like any other head's grid.
"""

from __future__ import annotations

import numpy as np

from runtime.heads.base import (
    SIMCC_DECODE_PLUGIN,
    DecodeContext,
    Floats,
    HeadSpec,
    NetDecode,
    Outputs,
    PluginInput,
    fused_keypoints,
    scaled_presence,
)

SPLIT_RATIO = 2.0  # every released RTMPose config (SimCCLabel simcc_split_ratio)
SIMCC_X, SIMCC_Y = "simcc_x", "simcc_y"

# The fused decode: DynPoseSimCCDecode reads both rows on the GPU (kernels/simcc_rowmath.cuh,
# the same arithmetic as decode_simcc) and returns keypoints in input pixels.
SPEC = HeadSpec(
    kind="simcc",
    manifest_kind="simcc",
    map_output=SIMCC_X,
    plugin_inputs=(
        PluginInput(
            SIMCC_X, "simcc", plugin=SIMCC_DECODE_PLUGIN, paired_output=SIMCC_Y, split_ratio=SPLIT_RATIO
        ),
    ),
)


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SPLIT_RATIO
) -> tuple[Floats, Floats]:
    """[N,K,Wx], [N,K,Hy] logits -> keypoints [N,K,2] (x, y) in input pixels, scores [N,K]."""
    x = np.asarray(simcc_x, np.float32)
    y = np.asarray(simcc_y, np.float32)
    bad = ~(np.isfinite(x).all(-1) & np.isfinite(y).all(-1))
    locs = np.stack([x.argmax(-1), y.argmax(-1)], -1).astype(np.float32)
    scores = np.minimum(x.max(-1), y.max(-1))
    locs[scores <= 0] = -1.0
    coords = locs / np.float32(split_ratio)
    coords[bad] = np.nan
    scores = np.where(bad, np.float32(0), scores)
    return coords.astype(np.float32), scores.astype(np.float32)


class SimCCDecoder:
    spec = SPEC

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode:
        fused = fused_keypoints(outs)
        coords, scores = fused if fused is not None else decode_simcc(outs[SIMCC_X], outs[SIMCC_Y])
        presence = scaled_presence(outs, len(coords), ctx.temperature)
        return NetDecode(coords, scores, presence, ctx.input_hw)
