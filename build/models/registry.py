"""One registry for every pose architecture (timm style).

Each architecture file calls :func:`register` for its variants; everything
else (export, tests, configs) iterates the registry, so a new model is tested
the moment it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from runtime.heads.registry import HEAD_KINDS as REGISTERED_KINDS
from runtime.heads.registry import HEATMAP, PROBMAP, PROBMAP_DH, SIMCC, head_spec, manifest_kinds

from .double_head import DoubleProbMapHead
from .heads import HeatmapHead, ProbMapHead
from .pose_net import TopdownPoseNet
from .router import Router
from .rtmcc_head import RTMCCHead

HEAD_KINDS = manifest_kinds()  # how the runtime decodes (the manifest's "head")
HEAD_CHOICES = REGISTERED_KINDS  # what a config may build: + the double probability map
# the model head each registered kind builds (runtime.heads.registry names the kinds)
HEAD_CLASSES: dict[str, type[nn.Module]] = {
    HEATMAP: HeatmapHead,
    PROBMAP: ProbMapHead,
    PROBMAP_DH: DoubleProbMapHead,
    SIMCC: RTMCCHead,
}
# the heads that sit on any backbone's last feature map through deconvs (ModelSpec.heads' default)
DECONV_HEADS = (HEATMAP, PROBMAP, PROBMAP_DH)


def decode_kind(head: str) -> str:
    """The manifest's head kind (how the runtime decodes): the double head is a probmap head whose
    extra ``outer_probmaps`` output the runtime finds by name (runtime.heads.double_decode)."""
    return head_spec(head).manifest_kind


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backbone and which head layout suits it.

    ``gmacs``/``params_m`` are the published reference numbers (docs/DESIGN.md section 4, MMPose's
    zoo) for the model with its reference head (``extra["reference_head"]``, else the heatmap head)
    at 1x3x``input_hw`` (None where there are none); tests compare them against counts taken from
    the built model. ``heads`` lists the heads the
    backbone takes: RTMPose's CSPNeXt was trained and released with the SimCC head only, so
    a heatmap head on it would be a net nobody has weights for.
    """

    name: str
    build_backbone: Callable[[], nn.Module]
    out_channels: int
    feat_hw: tuple[int, int]
    heatmap_deconvs: tuple[int, ...] = (256, 256, 256)
    probmap_deconvs: tuple[int, ...] = (256, 256, 256)
    aux_channels: int = 128
    input_hw: tuple[int, int] = (256, 192)  # the crop (H, W) the net is built and exported for
    heads: tuple[str, ...] = DECONV_HEADS
    gmacs: float | None = None
    params_m: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def check_head(name: str, head: str) -> None:
    """ValueError in one line when ``head`` is unknown or does not fit model ``name``'s backbone."""
    spec = get_spec(name)
    if head not in HEAD_CLASSES:
        raise ValueError(f"unknown head {head!r}; expected one of {HEAD_CHOICES}")
    if head not in spec.heads:
        raise ValueError(f"model {name!r} takes the head(s) {', '.join(spec.heads)}, not {head!r}")


def build_head(spec: ModelSpec, head: str) -> nn.Module:
    """The ``head`` for ``spec``'s backbone (call :func:`check_head` first)."""
    cls = HEAD_CLASSES[head]
    if cls is RTMCCHead:
        return RTMCCHead(spec.out_channels, spec.input_hw)
    if head_spec(head).probabilistic:
        return cls(
            spec.out_channels,
            deconv_out_channels=spec.probmap_deconvs,
            feat_hw=spec.feat_hw,
            aux_channels=spec.aux_channels,
        )
    return cls(spec.out_channels, deconv_out_channels=spec.heatmap_deconvs)


def build_pose_net(name: str, head: str = HEATMAP) -> TopdownPoseNet:
    """Backbone ``name`` with one of the heads its spec takes (heatmap, probability map, SimCC...)."""
    check_head(name, head)
    spec = get_spec(name)
    return TopdownPoseNet(spec.build_backbone(), build_head(spec, head), spec.input_hw)


def build_router(**kwargs) -> Router:
    return Router(**kwargs)
