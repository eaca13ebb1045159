"""Strict loading of the checkpoints people actually have (MMPose 1.x ``.pth``).

A wrong checkpoint must fail loudly and usefully: one error listing missing,
unexpected and wrongly shaped keys (first few of each, counts of all), never
a half-loaded network that silently predicts garbage.

Loading is ``torch.load(weights_only=True)`` only: unpickling a file in full
runs code from it, so a checkpoint that needs that is refused unless the user
passes ``--trust-checkpoint`` (``trust=True``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.artifacts.manifest import sha256_file
from runtime.errors import EXIT_INPUT, register_expected

_SHOW = 5
TRUST_FLAG = "--trust-checkpoint"


class CheckpointMismatch(ValueError):
    """The checkpoint's keys or shapes do not fit the network."""


class CheckpointUnreadable(ValueError):
    """Not a PyTorch checkpoint, unreadable, or one that needs full unpickling without --trust-checkpoint."""


class CheckpointMissing(FileNotFoundError):
    """The checkpoint path does not exist."""


for _cls in (CheckpointMismatch, CheckpointUnreadable, CheckpointMissing):
    register_expected(_cls, EXIT_INPUT)


def _where(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def _torch_load(path: Path, trust: bool, where: str) -> object:
    """weights_only=True, else (``trust`` only) full unpickling; every failure is one line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointUnreadable(
            f"cannot read checkpoint ({where}: {e.strerror or e}): check the path and its permissions"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file; each becomes one line
        text = str(e).split("WeightsUnpickler error:")[-1]
        first = ([ln.strip() for ln in text.splitlines() if ln.strip()] or [type(e).__name__])[0]
        if "Unsupported global" not in str(e):  # not "objects beyond tensors": garbage or damaged
            raise CheckpointUnreadable(
                f"not a PyTorch checkpoint, or a damaged one ({where}; "
                f"{type(e).__name__}: {first[:80]}): pass an MMPose .pth "
                "(a dict of tensors, or one under 'state_dict')"
            ) from None
        if not trust:
            raise CheckpointUnreadable(
                f"checkpoint holds Python objects beyond tensors and would need full unpickling, which runs "
                f"code from the file ({where}): re-save its tensors (torch.save(ckpt['state_dict'], path)) "
                f"or pass {TRUST_FLAG} if you trust where it came from"
            ) from None
    print(
        f"WARNING: {path}: unpickled in full ({TRUST_FLAG}); only do this with checkpoints you trust",
        file=sys.stderr,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointUnreadable(
            f"checkpoint does not unpickle even in full ({where}; {type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:80]}): pass an MMPose .pth"
        ) from None


def read_state_dict(
    path: str | Path, trust: bool = False, flag: str | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: ``state_dict`` (MMPose), ``model`` or a bare dict.

    MMPose checkpoints that carry mmengine objects in ``meta``/``message_hub``
    load only with ``trust=True`` (full unpickling runs code from the file).
    ``flag`` (e.g. ``--large-ckpt``) is named in every error.
    """
    path = Path(path)
    where = _where(path, flag)
    if not path.is_file():
        kind = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointMissing(f"checkpoint {kind} ({where}): pass the path of an MMPose .pth file")
    obj = _torch_load(path, trust, where)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointMismatch(
            f"no state_dict found ({where}): expected a dict of tensors, "
            "or one under 'state_dict' as MMPose saves it"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_meta(path: str | Path, trust: bool = False, flag: str | None = None) -> dict[str, Any]:
    """A checkpoint's ``meta`` dict (MMEngine and build.train save one beside ``state_dict``); {} when
    it has none. Read under the same rules as :func:`read_state_dict`."""
    obj = _torch_load(Path(path), trust, _where(Path(path), flag))
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def _listing(title: str, items: list[str]) -> str:
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{title} ({len(items)}): {', '.join(items[:_SHOW])}{more}"


def _read_parts(paths: list[Path], trust: bool, flag: str | None) -> dict[str, torch.Tensor]:
    """The state dicts of several files merged; a tensor named by two of them is an error (no silent override)."""
    sd: dict[str, torch.Tensor] = {}
    for p in paths:
        part = read_state_dict(p, trust, flag)
        twice = sorted(set(sd) & set(part))
        if twice:
            dup = _listing("also in an earlier part", twice)
            raise CheckpointMismatch(
                f"checkpoint parts overlap ({_where(p, flag)}: {dup}): each part must hold its own tensors"
            )
        sd.update(part)
    return sd


def load_strict(
    model: nn.Module,
    path: str | Path | Sequence[str | Path],
    role: str,
    trust: bool = False,
    flag: str | None = None,
) -> dict[str, Any]:
    """Load ``path`` into ``model`` or raise one error (one line) describing every mismatch.

    ``path`` may be a list: the parts are merged (e.g. a base net plus a branch trained on top
    of it, as ``fixture-dyn-dh`` ships the outer map's branch apart from fixture-l's weights)."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    sd = _read_parts(paths, trust, flag)
    where = " + ".join(_where(p, flag) for p in paths)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [where, f"{type(model).__name__}, {len(own)} tensors"]
        if missing:
            parts.append(_listing("missing", missing))
        if unexpected:
            parts.append(_listing("unexpected", unexpected))
        if shapes:
            parts.append(_listing("wrong shape", shapes))
        raise CheckpointMismatch(
            f"checkpoint does not fit the {role} network ({'; '.join(parts)}): pass a "
            "checkpoint of the architecture this --config names (see `python -m "
            "build.engines --list-configs`), or pick the config that matches it"
        )
    model.load_state_dict(sd, strict=True)
    if len(paths) == 1:
        return {"source": "checkpoint", "path": str(paths[0]), "sha256": sha256_file(paths[0])}
    return {
        "source": "checkpoint",
        "path": " + ".join(str(p) for p in paths),
        "sha256": sha256_file(paths[0]),
        "parts": [{"path": str(p), "sha256": sha256_file(p)} for p in paths],
    }


def init_random(model: nn.Module, role: str, seed: int) -> dict[str, Any]:
    """Seeded random weights, announced loudly: every accuracy number is then meaningless."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    print(
        f"WARNING: {role} network has RANDOM weights (seed {seed}); its outputs mean nothing. "
        f"Pass --{role}-ckpt to use real weights.",
        file=sys.stderr,
    )
    return {"source": "random", "path": None, "sha256": None, "seed": seed}


def _inert(name: str) -> type:
    """A stand-in for the class or function ``name`` in a published checkpoint: building one runs
    nothing from the file, it only keeps the arguments it was given."""

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        self.args, self.kw = args, kw

    def __setstate__(self: Any, state: Any) -> None:
        self.state = state

    return type(name.rsplit(".", 1)[-1], (), {"__init__": __init__, "__setstate__": __setstate__})


def read_published(path: str | Path, flag: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a released checkpoint whose hash the zoo table verified (build/zoo.py).

    MMPose's files carry mmengine objects (``message_hub``, numpy arrays in ``meta``) that
    ``weights_only`` refuses. Rather than unpickling in full (an 8-hex-digit hash prefix is
    too short to vouch for a file), each global the file names beyond torch's safe set is
    bound to an inert stand-in (:func:`_inert`) and the file is read ``weights_only``:
    the tensors come out, the rest is dropped, nothing from the file runs."""
    path = Path(path)
    where = _where(path, flag)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([(_inert(n), n) for n in names]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file; each becomes one line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        first = next((ln for ln in lines if "GLOBAL" in ln), lines[0])  # torch's reason, not its preamble
        raise CheckpointUnreadable(
            f"released checkpoint does not read ({where}; {type(e).__name__}: {first[:100]}): "
            "delete it from the cache to fetch it again"
        ) from None
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointMismatch(f"no state_dict of tensors in the released checkpoint ({where})")
    return {str(k).removeprefix("module."): v for k, v in sd.items()}
