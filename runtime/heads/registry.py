"""Head kinds -> their decoders: the one place that maps a head's name to how it is read.

Everything that turns net outputs into keypoints (the pipeline, the sweep bench, the Triton
BLS model, the device check, calibration, training) asks this registry; nothing else compares
head-kind names (tests/test_head_registry.py checks). Adding a head kind is one module beside
this one (a :class:`~runtime.heads.base.HeadSpec` and a decoder) and one line in ``DECODERS``.
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.heads import heatmap, probmap, probmap_dh, simcc
from runtime.heads.base import DecodeContext, Floats, HeadDecoder, HeadSpec, Outputs

DECODERS: dict[str, HeadDecoder] = {
    d.spec.kind: d
    for d in (
        heatmap.HeatmapDecoder(),
        probmap.ProbMapDecoder(),
        probmap_dh.DoubleProbMapDecoder(),
        simcc.SimCCDecoder(),
    )
}

# The names other code may spell a kind with (configs, training, tests): the registry's own.
HEATMAP, PROBMAP, PROBMAP_DH = heatmap.SPEC.kind, probmap.SPEC.kind, probmap_dh.SPEC.kind
SIMCC = simcc.SPEC.kind
HEAD_KINDS = tuple(DECODERS)


def head_spec(kind: str) -> HeadSpec:
    """The spec of a registered head kind (a config's or a manifest's name)."""
    if kind not in DECODERS:
        raise ValueError(f"unknown head kind {kind!r}; known: {', '.join(DECODERS)}")
    return DECODERS[kind].spec


def manifest_kinds() -> tuple[str, ...]:
    """The head names a manifest may record (a kind told apart by its outputs shares one)."""
    return tuple(dict.fromkeys(d.spec.manifest_kind for d in DECODERS.values()))


def decoder_for(manifest_kind: str, output_names: Iterable[str]) -> HeadDecoder:
    """The decoder of a net whose manifest says ``manifest_kind`` and which exports
    ``output_names``: the kind whose marker output is among them, else the plain kind."""
    names = set(output_names)
    cands = [d for d in DECODERS.values() if d.spec.manifest_kind == manifest_kind]
    if not cands:
        raise ValueError(
            f"unknown head kind {manifest_kind!r} in the manifest; known: {', '.join(manifest_kinds())}"
        )
    marked = [d for d in cands if d.spec.marker_output is not None and d.spec.marker_output in names]
    plain = [d for d in cands if d.spec.marker_output is None]
    return (marked or plain)[0]


def decode_outputs(
    head: str, outs: Outputs, temperature: float = 1.0, presence_threshold: float = 0.5
) -> tuple[Floats, Floats, Floats]:
    """Net outputs -> (grid xy [n,K,2], keypoint scores [n,K], presence [n,K]) for a manifest head.

    Uses the fused plugin's ``keypoints``/``keypoint_scores`` when the engine has them, so no
    full map is touched on the host; otherwise the numpy reference decode for the head kind.
    """
    net = decoder_for(head, outs).decode(outs, DecodeContext(temperature, presence_threshold))
    return net.coords, net.scores, net.presence


def plugin_mode(kind: str) -> str:
    """The DynPoseDecode ``mode`` that decodes this head kind (ValueError: the plugin cannot)."""
    spec = head_spec(kind)
    if not spec.plugin_inputs:
        raise ValueError(f"the decode plugin cannot decode {kind!r} heads")
    return spec.plugin_inputs[0].mode


def decodes_probability_maps(manifest_kind: str) -> bool:
    """Whether nets recorded with this manifest head output ProbPose probability maps."""
    return any(d.spec.probabilistic for d in DECODERS.values() if d.spec.manifest_kind == manifest_kind)


__all__ = [
    "DECODERS",
    "HEAD_KINDS",
    "HEATMAP",
    "PROBMAP",
    "PROBMAP_DH",
    "SIMCC",
    "decode_outputs",
    "decoder_for",
    "decodes_probability_maps",
    "head_spec",
    "manifest_kinds",
    "plugin_mode",
]
