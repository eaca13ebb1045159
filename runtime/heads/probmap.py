"""The ProbPose probability-map head (sparsemax maps, build.models.heads.ProbMapHead): expected-OKS
decode, plus presence, visibility and predicted OKS (runtime.heads.probfields)."""

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
from runtime.heads.decode import HM_HW, decode_probmaps

SPEC = HeadSpec(
    kind="probmap",
    manifest_kind="probmap",
    map_output="probmaps",
    plugin_inputs=(
        PluginInput("logits", PLUGIN_MODES[1], normalize=1, sigmas=True),  # sparsemax fused in the plugin
        PluginInput("probmaps", PLUGIN_MODES[1], normalize=0, sigmas=True),
    ),
    probabilistic=True,
)


class ProbMapDecoder:
    spec = SPEC

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode:
        fused = fused_keypoints(outs)
        coords, scores = fused if fused is not None else decode_probmaps(outs[SPEC.map_output])
        presence = scaled_presence(outs, len(coords), ctx.temperature)
        return NetDecode(coords, scores, presence, grid_of(outs, SPEC, HM_HW))
