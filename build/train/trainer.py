"""CPU training of one pose net on fresh synthetic crops.

Heatmap heads learn with MSE x100; SimCC heads (RTMPose's RTMCC) with MMPose's KLDiscretLoss on
Gaussian SimCC labels, their targets the same keypoints in input pixels. Probability-map heads first learn the same
Gaussian maps on their pre-temperature maps (``mse_fraction`` of the steps:
cheap, and sparsemax of a sharp Gaussian is already a sensible probability
map), then switch to ProbPose's expected-OKS loss; their presence /
visibility / OKS heads (on detached features) learn in that second phase.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.heads.grid import HEATMAP_HW
from runtime.heads.registry import HEATMAP, SIMCC, head_spec
from runtime.safe_io import atomic_write_bytes

from .data import batches
from .losses import argmax_oks, aux_losses, heatmap_mse, kl_discret_loss, probpose_loss, simcc_targets


@dataclass
class TrainPlan:
    steps: int
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    mse_fraction: float = 0.8  # probmap heads only
    seed: int = 0
    max_minutes: float | None = None  # safety stop on a busy machine (reported, never silent)
    clip_grad: float | None = None  # max gradient norm (RTMPose-t diverged at lr 2e-3 without it)


def train_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer,
    phase: str,
    clip_grad: float | None = None,
) -> float:
    """One optimiser step; ``phase`` is 'mse', 'probpose' or 'kl' (SimCC). Returns the loss."""
    model.train()
    x = batch["input"].contiguous(memory_format=torch.channels_last)
    weight = batch["inside"]
    feat = model.backbone(x)
    head = model.head
    if phase == "mse":
        loss = heatmap_mse(head.forward_maps(feat), batch["xy"], weight)
    elif phase == "kl":
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        # the batch's keypoints are on the 64x48 heatmap grid; pixel centres align (x_in = x_hm * 4)
        xy = batch["xy"] * torch.tensor([hw[1] / HEATMAP_HW[1], hw[0] / HEATMAP_HW[0]])
        tx, ty, w = simcc_targets(xy, weight, hw)
        px, py = head(feat)
        loss = kl_discret_loss(px, py, tx, ty, w)
        aid = getattr(model, "heatmap_aid", None)  # build.train.rtm_fixture.HeatmapAid, training only
        if aid is not None:
            loss = loss + model.heatmap_aid_weight * heatmap_mse(aid(feat), batch["xy"], weight)
    elif phase == "probpose":
        probs, presence, visibility, oks = head(feat)
        loss = probpose_loss(probs, batch["xy"], batch["area_hm"], weight)
        loss = loss + aux_losses(
            presence, visibility, oks, batch, argmax_oks(probs, batch["xy"], batch["area_hm"])
        )
    else:
        raise ValueError(f"unknown phase {phase!r}; expected 'mse', 'probpose' or 'kl' (SimCC)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    opt.step()
    return float(loss.detach())


def _lr_at(progress: float, peak: float, warm: float = 0.02) -> float:
    """Linear warm-up over the first 2%, then cosine to 2% of the peak; ``progress`` in [0, 1]."""
    if progress < warm:
        return peak * max(progress / warm, 0.02)
    t = min(1.0, (progress - warm) / (1 - warm))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def _phase_lr(progress: float, peak: float, switch: float, switched_at: float | None) -> float:
    """The first phase's schedule over [0, switch); after a switch to the ProbPose loss, a fresh one
    over what is left, at half the peak."""
    if switched_at is None:
        return _lr_at(progress / switch, peak)
    return _lr_at((progress - switched_at) / max(1e-6, 1 - switched_at), peak * 0.5)


def _probe(model: nn.Module, probe: Callable[[nn.Module], str], where: str, bar: Any) -> None:
    """One probe line under the progress bar, in eval mode without gradients, then back to training."""
    with torch.no_grad():
        model.eval()
        bar.write(f"{where}: {probe(model)}")
        model.train()


def train_pose(
    model: nn.Module,
    plan: TrainPlan,
    desc: str = "train",
    workers: int = 1,
    log: Any = None,
    probe: Callable[[nn.Module], str] | None = None,
    probe_every: int = 300,
) -> dict[str, Any]:
    """Train ``model`` in place; returns a summary for the checkpoint meta.

    Progress is steps done / planned, or time used / ``max_minutes`` when that
    is larger: on a busy machine the schedule (learning-rate decay, switch to
    the ProbPose loss) is compressed into the time cap instead of being cut
    off half-way, and the summary says how many steps actually ran.
    ``probe(model)`` (eval mode, no grad) returns a line printed every ``probe_every`` steps:
    a loss can sit still while the keypoints move, or fall while they stay at the mean pose.
    """
    from tqdm import tqdm

    torch.manual_seed(plan.seed)
    model.to(memory_format=torch.channels_last)
    kind = getattr(model, "head_kind", HEATMAP)
    switch = plan.mse_fraction if head_spec(kind).probabilistic else 1.0  # heatmap heads: MSE only
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    t0 = time.time()
    budget = plan.max_minutes * 60 if plan.max_minutes else None
    losses: list[float] = []
    phase = "kl" if kind == SIMCC else "mse"  # SimCC heads: the KL loss throughout
    switched_at = None
    bar = tqdm(total=plan.steps, desc=desc, unit="step", mininterval=5.0)
    step = 0
    loader = batches(plan.seed, plan.batch_size, workers)
    for step, batch in enumerate(loader):
        progress = step / plan.steps
        if budget:
            progress = max(progress, (time.time() - t0) / budget)
        if progress >= 1.0:
            break
        if phase == "mse" and progress >= switch:
            # new loss, new scale: restart the optimiser's moments, keep the weights
            phase, switched_at = "probpose", progress
            opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
        lr = _phase_lr(progress, plan.lr, switch, switched_at if phase == "probpose" else None)
        for g in opt.param_groups:
            g["lr"] = lr
        losses.append(train_step(model, batch, opt, phase, plan.clip_grad))
        bar.update(1)
        if probe is not None and step % probe_every == 0 and step:
            _probe(model, probe, f"{desc} step {step}", bar)
        if step % 50 == 0:
            recent = sum(losses[-50:]) / len(losses[-50:])
            bar.set_postfix(loss=f"{recent:.4f}", phase=phase)
            line = f"{desc} step {step} phase {phase} lr {lr:.2e} loss {recent:.5f} t {time.time() - t0:.0f}s"
            if log is not None:
                print(line, file=log, flush=True)
    del loader
    bar.close()
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    done = len(losses)
    if done < plan.steps:
        print(
            f"NOTE: {desc} ran {done}/{plan.steps} steps in its {plan.max_minutes} min cap "
            "(machine busier than planned); the schedule was compressed to fit"
        )
    return {
        "steps": done,
        "planned_steps": plan.steps,
        "batch_size": plan.batch_size,
        "lr": plan.lr,
        "seed": plan.seed,
        "minutes": round((time.time() - t0) / 60, 2),
        "clip_grad": plan.clip_grad,
        "head": kind,
        "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:])),
    }


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any], half: bool = False) -> Path:
    """MMPose-style ``{'state_dict', 'meta'}``; plain types only so ``weights_only=True`` loads it.
    ``half``: floating tensors in fp16 (half the bytes of a committed fixture; loading into an fp32
    net casts them back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).clone().contiguous()
        for k, v in model.state_dict().items()
    }
    write_checkpoint(path, {"state_dict": sd, "meta": meta})
    return path


def write_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """``torch.save`` into memory, then one atomic write: a full disk or a kill leaves the earlier file."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
