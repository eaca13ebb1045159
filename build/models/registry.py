"""One registry for every pose architecture (timm style).

Each architecture file calls :func:`register` for its variants; everything
else (export, tests, configs) iterates the registry, so a new model is tested
the moment it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .double_head import DoubleProbMapHead
from .heads import HeatmapHead, ProbMapHead
from .pose_net import TopdownPoseNet
from .router import Router

HEAD_KINDS = ("heatmap", "probmap")  # how the runtime decodes (the manifest's "head")
HEAD_CHOICES = (*HEAD_KINDS, "probmap-dh")  # what a config may build: + the double probability map


def decode_kind(head: str) -> str:
    """The manifest's head kind (how the runtime decodes): the double head is a probmap head whose
    extra ``outer_probmaps`` output the runtime finds by name (runtime.heads.double_decode)."""
    return "probmap" if head == "probmap-dh" else head


@dataclass(frozen=True)
class ModelSpec:
    """How to build one backbone and which head layout suits it.

    ``gmacs``/``params_m`` are docs/DESIGN.md section 4's reference numbers for the
    heatmap-head model at 1x3x256x192 (None where the table has none); tests
    compare them against counts taken from the built model.
    """

    name: str
    build_backbone: Callable[[], nn.Module]
    out_channels: int
    feat_hw: tuple[int, int]
    heatmap_deconvs: tuple[int, ...] = (256, 256, 256)
    probmap_deconvs: tuple[int, ...] = (256, 256, 256)
    aux_channels: int = 128
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


def build_pose_net(name: str, head: str = "heatmap") -> TopdownPoseNet:
    """Backbone ``name`` with a heatmap, probability-map or double probability-map head."""
    spec = get_spec(name)
    if head == "heatmap":
        h = HeatmapHead(spec.out_channels, deconv_out_channels=spec.heatmap_deconvs)
    elif head in ("probmap", "probmap-dh"):
        cls = DoubleProbMapHead if head == "probmap-dh" else ProbMapHead
        h = cls(
            spec.out_channels,
            deconv_out_channels=spec.probmap_deconvs,
            feat_hw=spec.feat_hw,
            aux_channels=spec.aux_channels,
        )
    else:
        raise ValueError(f"unknown head {head!r}; expected one of {HEAD_CHOICES}")
    return TopdownPoseNet(spec.build_backbone(), h)


def build_router(**kwargs) -> Router:
    return Router(**kwargs)
