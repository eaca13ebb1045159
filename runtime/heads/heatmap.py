"""The heatmap head (MSRA Gaussian maps, build.models.heads.HeatmapHead): argmax + quarter-pixel shift."""

from __future__ import annotations

from runtime.heads.base import (
    PLUGIN_MODES,
    DecodeContext,
    HeadSpec,
    NetDecode,
    Outputs,
    PluginInput,
    fused_keypoints,
    grid_of,
    scaled_presence,
)
from runtime.heads.decode import HM_HW, decode_heatmaps

SPEC = HeadSpec(
    kind="heatmap",
    manifest_kind="heatmap",
    map_output="heatmaps",
    plugin_inputs=(PluginInput("heatmaps", PLUGIN_MODES[0]),),
)


class HeatmapDecoder:
    spec = SPEC

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode:
        fused = fused_keypoints(outs)
        coords, scores = fused if fused is not None else decode_heatmaps(outs[SPEC.map_output])
        presence = scaled_presence(outs, len(coords), ctx.temperature)
        return NetDecode(coords, scores, presence, grid_of(outs, SPEC, HM_HW))
