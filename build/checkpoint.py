"""Strict loading of the checkpoints people actually have (MMPose 1.x ``.pth``).

A wrong checkpoint must fail loudly and usefully: one error listing missing,
unexpected and wrongly shaped keys (first few of each, counts of all), never
a half-loaded network that silently predicts garbage.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runtime.manifest import sha256_file

_SHOW = 5


class CheckpointMismatch(ValueError):
    """The checkpoint's keys or shapes do not fit the network."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: ``state_dict`` (MMPose), ``model`` or a bare dict.

    MMPose checkpoints carry mmengine objects in ``meta``/``message_hub``; they
    are tried with ``weights_only=True`` first and only fall back to full
    unpickling with a warning, since unpickling runs code from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of an MMPose .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling refusal means "has non-tensor objects"
        warnings.warn(f"{path}: not loadable with weights_only=True; unpickling it fully "
                      "(only do this with checkpoints you trust)", stacklevel=2)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatch(f"{path}: no state_dict found (expected a dict of tensors, "
                                 "or one under 'state_dict' as MMPose saves it)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _listing(title: str, items: list[str]) -> str:
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"  {title} ({len(items)}): {', '.join(items[:_SHOW])}{more}"


def load_strict(model: nn.Module, path: str | Path, role: str) -> dict[str, Any]:
    """Load ``path`` into ``model`` or raise one error describing every mismatch."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {path} does not fit the {role} network "
                 f"({type(model).__name__}, {len(own)} tensors):"]
        if missing:
            lines.append(_listing("missing", missing))
        if unexpected:
            lines.append(_listing("unexpected", unexpected))
        if shapes:
            lines.append(_listing("wrong shape", shapes))
        lines.append("  fix: pass a checkpoint of the architecture this --config names "
                     "(see `python -m build.engines --list-configs`), or pick the config that matches it")
        raise CheckpointMismatch("\n".join(lines))
    model.load_state_dict(sd, strict=True)
    return {"source": "checkpoint", "path": str(path), "sha256": sha256_file(path)}


def init_random(model: nn.Module, role: str, seed: int) -> dict[str, Any]:
    """Seeded random weights, announced loudly: every accuracy number is then meaningless."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    print(f"WARNING: {role} network has RANDOM weights (seed {seed}); its outputs mean nothing. "
          f"Pass --{role}-ckpt to use real weights.", file=sys.stderr)
    return {"source": "random", "path": None, "sha256": None, "seed": seed}
