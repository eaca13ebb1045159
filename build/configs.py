"""Named DynPose pipeline configs: one registry, ``--config NAME`` everywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from runtime.heads.registry import HEATMAP, PROBMAP, PROBMAP_DH

DEFAULT_CONFIG = "fixture-dyn"


@dataclass(frozen=True)
class NetChoice:
    arch: str  # a name in build.models' registry
    head: str = HEATMAP  # a runtime.heads.registry kind


@dataclass(frozen=True)
class PipelineConfig:
    """The three networks of a pipeline plus the routing knobs.

    ``theta`` places k1 inside the calibration score range and ``p`` is the
    percentage of crops sent to the large net (docs/DESIGN.md section 3); both can be
    overridden on the command line without re-exporting.
    """

    name: str
    small: NetChoice
    large: NetChoice
    router: dict = field(default_factory=dict)
    theta: float = 0.1
    p: float = 50.0
    checkpoints: dict = field(
        default_factory=dict
    )  # role -> path (or list of paths, merged) of bundled weights
    detector: str | None = None  # default --detector ONNX (absolute or repo-relative); None = none
    description: str = ""
    # Where the bundled weights come from, so where presence and coverage are calibrated
    # (calib.data.calibration_domain): "photos" = CropCOCO-style cuts of --calib-data people,
    # "synthetic" = cuts of build.synth scenes (the fixtures were trained on those; fitting them
    # on photos measures the domain gap, not the heads). Other weights always calibrate on photos.
    calib_domain: str = "photos"

    def to_dict(self) -> dict:
        return asdict(self)


_CONFIGS: dict[str, PipelineConfig] = {}


def register_config(cfg: PipelineConfig) -> PipelineConfig:
    if cfg.name in _CONFIGS:
        raise ValueError(f"config {cfg.name!r} registered twice")
    _CONFIGS[cfg.name] = cfg
    return cfg


def list_configs() -> list[str]:
    return sorted(_CONFIGS)


def get_config(name: str) -> PipelineConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise SystemExit(
            f"error: unknown --config {name!r}; choose one of: {', '.join(list_configs())}"
        ) from None


register_config(
    PipelineConfig(
        "dyn-r50-h32",
        NetChoice("res50"),
        NetChoice("hrnet-w32"),
        description="DynPose paper default: ResNet-50 SimpleBaseline small, HRNet-W32 large, heatmap heads",
    )
)
register_config(
    PipelineConfig(
        "dyn-mbv2-h48",
        NetChoice("mbv2"),
        NetChoice("hrnet-w48"),
        description="MobileNetV2 small, HRNet-W48 large, heatmap heads",
    )
)
# ProbPose checkpoints exist for its ViT backbones only, so the probability-map head goes on
# the LARGE net; the small net keeps the heatmap head its real checkpoints have (MMPose
# SimpleBaseline ResNet-50). The pipeline decodes each net by its own head (mixed heads,
# as the trained fixtures do).
register_config(
    PipelineConfig(
        "dyn-r50-probpose",
        NetChoice("res50", HEATMAP),
        NetChoice("probpose-s", PROBMAP),
        description="ResNet-50 heatmap small, ProbPose-s probability-map large (ProbPose decode, presence)",
    )
)


# Trained fixtures (issue 9): tiny nets trained on synthetic figures by
# `python -m build.train.fixtures --seed 0` (theta 0.15: the pick of `--theta auto` on its
# synthetic calibration set, see build/fixtures/report.json). They know synthetic figures,
# not real people; pass real checkpoints with another config for real use.
register_config(
    PipelineConfig(
        "fixture-dyn",
        NetChoice("fixture-s", HEATMAP),
        NetChoice("fixture-l", PROBMAP),
        router=dict(channels=(8, 8, 16, 32), hidden=32),
        theta=0.15,
        p=50.0,
        checkpoints={
            "small": "build/fixtures/small.pth",
            "large": "build/fixtures/large.pth",
            "router": "build/fixtures/router.pth",
        },
        calib_domain="synthetic",
        description="trained fixtures on synthetic figures: fixture-s heatmap small, fixture-l ProbPose large",
    )
)
# fixture-dyn with the double-heatmap large net (ProbPose-s-DH equivalent, build/models/double_head.py):
# fixture-l's weights plus the outer branch `python -m build.train.double --fixture` trained on them
# (build/fixtures/large-dh-outer.pth holds only that branch; the two files are merged at load).
register_config(
    PipelineConfig(
        "fixture-dyn-dh",
        NetChoice("fixture-s", HEATMAP),
        NetChoice("fixture-l", PROBMAP_DH),
        router=dict(channels=(8, 8, 16, 32), hidden=32),
        theta=0.15,
        p=50.0,
        checkpoints={
            "small": "build/fixtures/small.pth",
            "large": ["build/fixtures/large.pth", "build/fixtures/large-dh-outer.pth"],
            "router": "build/fixtures/router.pth",
        },
        calib_domain="synthetic",
        description="fixture-dyn with the double-heatmap large net (outer map localises out-of-window keypoints)",
    )
)
