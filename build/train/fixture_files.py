"""Which files a fixture config owns in a fixtures folder, and loading them strictly.

Why apart from ``build.train.fixtures``: the command trains, scores and writes; this answers only
"where do this config's small, large and router weights live, and do they fit its nets", for the
command's input checks before anything is drawn and for ``--eval-only`` / ``--reuse``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from runtime.errors import InputError

from ..checkpoint import load_strict
from ..configs import get_config, list_configs
from ..models import build_pose_net, build_router

CONFIG = "fixture-dyn"
ROLES = ("small", "large", "router")


def fixture_config(name: str):
    """The named config if its small, large and router weights are one bundled file each
    (a fixture config); InputError in one line otherwise."""
    if name not in list_configs():
        raise InputError("unknown config", f"--config {name}", "use fixture-dyn or fixture-rtm")
    cfg = get_config(name)
    files = cfg.checkpoints
    if cfg.calib_domain != "synthetic" or not all(isinstance(files.get(r), str) for r in ROLES):
        raise InputError(
            "not a fixture config (one bundled file per small, large and router net)",
            f"--config {name}",
            "use fixture-dyn or fixture-rtm",
        )
    return cfg


def role_file(out: Path, cfg, role: str) -> Path:
    """Where ``role``'s weights of ``cfg`` live in ``out``: the basename the config bundles."""
    return out / Path(cfg.checkpoints[role]).name


def report_file(out: Path, cfg) -> Path:
    return out / ("report.json" if cfg.name == CONFIG else f"report-{cfg.name}.json")


def load_trained(net: torch.nn.Module, path: Path, role: str, trust: bool = False) -> dict:
    """Strictly load ``path`` into ``net`` (fp16 files are cast back); returns the checkpoint's ``meta``."""
    load_strict(net, path, role, trust=trust, flag="--out")
    obj = torch.load(path, weights_only=not trust)
    return obj.get("meta", {}) if isinstance(obj, dict) else {}


def load_fixtures(out: Path, cfg, trust: bool = False) -> tuple[dict, torch.nn.Module]:
    nets = {}
    for role, choice in (("small", cfg.small), ("large", cfg.large)):
        nets[role] = build_pose_net(choice.arch, choice.head)
        load_strict(nets[role], role_file(out, cfg, role), role, trust=trust, flag="--out")
        nets[role].eval().requires_grad_(False)
    router = build_router(**cfg.router)
    load_strict(router, role_file(out, cfg, "router"), "router", trust=trust, flag="--out")
    return nets, router.eval()


def check_inputs(out: Path, cfg, need: set[str], trust: bool) -> None:
    """Refuse missing or unfitting checkpoints in --out before the synthetic sets are drawn."""
    for role in sorted(need):
        net = (
            build_router(**cfg.router)
            if role == "router"
            else build_pose_net(getattr(cfg, role).arch, getattr(cfg, role).head)
        )
        path = role_file(out, cfg, role)
        if not path.is_file():
            raise InputError(
                f"no {path.name} to load ({cfg.name}'s {role} net)",
                f"--out {out}",
                "train it first (drop it from --reuse/--resume/--eval-only) or point --out at the fixtures",
            )
        load_strict(net, path, role, trust=trust, flag="--out")
