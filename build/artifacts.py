"""Stage 1 of the build: networks -> weights -> ONNX -> manifest entries.

Each role (router, small, large) goes through the same small loaders
(build -> load weights -> export -> simplify -> parity -> count), so adding
a model or a role never means a new code path.
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.artifacts.manifest import SCHEMA_VERSION
from runtime.heads.grid import HEATMAP_HW
from runtime.pose.preprocess import INPUT_HW, MEAN, PADDING, STD

from .checkpoint import init_random, load_strict, sha256_file
from .configs import PipelineConfig
from .export import OPSET, describe_io, export_onnx, input_chw, parity, simplify_onnx
from .flops import count_macs, count_params
from .models import build_pose_net, build_router
from .models.registry import decode_kind

ROLES = ("router", "small", "large")
REPO = Path(__file__).resolve().parents[1]


def build_network(cfg: PipelineConfig, role: str) -> nn.Module:
    if role == "router":
        return build_router(**cfg.router)
    choice = getattr(cfg, role)
    return build_pose_net(choice.arch, choice.head)


def load_weights(
    model: nn.Module, cfg: PipelineConfig, role: str, ckpt: str | None, seed: int, trust: bool = False
) -> dict[str, Any]:
    """Explicit --<role>-ckpt, else the config's bundled weights, else seeded random."""
    path = ckpt or cfg.checkpoints.get(role)
    if path:

        def resolve(x: str) -> Path:  # a config's bundled path is repo-relative
            p = Path(x)
            return REPO / p if not p.is_absolute() and not p.exists() else p

        p = [resolve(x) for x in path] if isinstance(path, (list, tuple)) else resolve(path)
        flag = f"--{role}-ckpt" if ckpt else f"bundled {role} checkpoint of --config {cfg.name}"
        info = load_strict(model, p, role, trust=trust, flag=flag)
        info["bundled"] = ckpt is None
        return info
    return init_random(model, role, seed)


def export_role(
    model: nn.Module,
    out_dir: Path,
    role: str,
    opset: int = OPSET,
    simplify: bool = True,
    parity_batches: tuple[int, ...] = (1, 7),
) -> dict[str, Any]:
    """Export one network and describe it for the manifest."""
    model = model.eval()
    path = export_onnx(model, out_dir / f"{role}.onnx", model.output_names, opset)
    simplified = simplify_onnx(path) if simplify else "none"
    inputs, outputs = describe_io(path)
    return {
        "role": role,
        "onnx": path.name,
        "sha256": sha256_file(path),
        "opset": opset,
        "simplified_with": simplified,
        "inputs": inputs,
        "outputs": outputs,
        "gmacs": round(count_macs(model, (1, *input_chw(model))), 4),
        "params_m": round(count_params(model), 4),
        "parity_max_abs_err": parity(model, path, parity_batches),
        "parity_batches": list(parity_batches),
    }


def new_manifest(cfg: PipelineConfig, target: str) -> dict[str, Any]:
    import onnx
    import onnxruntime

    tools = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for mod in ("onnxsim", "onnxslim"):
        try:
            tools[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional tools
            pass
    return {
        "schema_version": SCHEMA_VERSION,
        "config": cfg.name,
        "target": target,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pipeline": cfg.to_dict(),
        "tools": tools,
        "input": {
            "name": "input",
            "shape": ["N", 3, *INPUT_HW],
            "mean": (MEAN / 255).round(3).tolist(),
            "std": (STD / 255).round(3).tolist(),
            "heatmap_size": list(HEATMAP_HW),
            "padding": PADDING,
        },
        "models": {},
        "presence": {"temperature": 1.0, "threshold": 0.5},
    }


def weights_summary(models: dict[str, dict[str, Any]]) -> str:
    sources = {m["weights"]["source"] for m in models.values()}
    if sources == {"checkpoint"}:
        return "fixture" if all(m["weights"].get("bundled") for m in models.values()) else "checkpoint"
    return sources.pop() if len(sources) == 1 else "mixed"


def export_all(
    cfg: PipelineConfig,
    out_dir: Path,
    ckpts: dict[str, str | None],
    seed: int = 0,
    opset: int = OPSET,
    simplify: bool = True,
    progress: Callable[[str], None] = lambda s: None,
    trust: bool = False,
) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    """Export every role; returns manifest model entries and the torch nets (for calibration).

    Every checkpoint is loaded (and a bad one refused) before the first export."""
    entries: dict[str, Any] = {}
    nets: dict[str, nn.Module] = {}
    loaded = {}
    for role in ROLES:
        progress(f"{role}: build + weights")
        torch.manual_seed(seed)
        model = build_network(cfg, role)
        loaded[role] = model, load_weights(model, cfg, role, ckpts.get(role), seed, trust)
    for role in ROLES:
        model, weights = loaded[role]
        progress(f"{role}: export + simplify + parity")
        entry = export_role(model, out_dir, role, opset, simplify)
        arch = "router" if role == "router" else getattr(cfg, role).arch
        head = "score" if role == "router" else decode_kind(getattr(cfg, role).head)
        entries[role] = {"role": role, "arch": arch, "head": head, "weights": weights, **entry}
        nets[role] = model
    return entries, nets


def add_plugin_variants(out_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """``<role>.plugin.onnx``: the pose nets with the fused GPU decode (TensorRT only).

    The decode reads the maps on the GPU and only keypoints and scores leave
    it; the fp32 model stays the ONNX Runtime default.
    """
    import onnx

    from .plugin_nodes import add_decode_plugin

    for role in ("small", "large"):
        e = entries[role]
        model = onnx.load(str(out_dir / e["onnx"]))
        fused = add_decode_plugin(model, e["head"])
        path = out_dir / f"{role}.plugin.onnx"
        onnx.save(fused, str(path))
        e.setdefault("variants", {})["plugin"] = {
            "onnx": path.name,
            "sha256": sha256_file(path),
            "plugin_library": "libdynpose_plugins.so",
            "outputs": [o.name for o in fused.graph.output],
        }
