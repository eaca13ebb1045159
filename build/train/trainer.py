"""CPU training of one pose net on fresh synthetic crops.

Heatmap heads learn with MSE x100. Probability-map heads first learn the same
Gaussian maps on their pre-temperature maps (``mse_fraction`` of the steps:
cheap, and sparsemax of a sharp Gaussian is already a sensible probability
map), then switch to ProbPose's expected-OKS loss; their presence /
visibility / OKS heads (on detached features) learn in that second phase.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import batches
from .losses import argmax_oks, aux_losses, heatmap_mse, probpose_loss


@dataclass
class TrainPlan:
    steps: int
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    mse_fraction: float = 0.8          # probmap heads only
    seed: int = 0
    max_minutes: float | None = None   # safety stop on a busy machine (reported, never silent)


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               phase: str) -> float:
    """One optimiser step; ``phase`` is 'mse' or 'probpose'. Returns the loss."""
    model.train()
    x = batch["input"].contiguous(memory_format=torch.channels_last)
    weight = batch["inside"]
    feat = model.backbone(x)
    head = model.head
    if phase == "mse":
        loss = heatmap_mse(head.forward_maps(feat), batch["xy"], weight)
    elif phase == "probpose":
        probs, presence, visibility, oks = head(feat)
        loss = probpose_loss(probs, batch["xy"], batch["area_hm"], weight)
        loss = loss + aux_losses(presence, visibility, oks, batch,
                                 argmax_oks(probs, batch["xy"], batch["area_hm"]))
    else:
        raise ValueError(f"unknown phase {phase!r}; expected 'mse' or 'probpose'")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _lr_at(step: int, plan: TrainPlan) -> float:
    """Short linear warm-up, then cosine to 2% of the peak."""
    warm = max(1, plan.steps // 50)
    if step < warm:
        return plan.lr * (step + 1) / warm
    t = (step - warm) / max(1, plan.steps - warm)
    return plan.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def train_pose(model: nn.Module, plan: TrainPlan, desc: str = "train", workers: int = 1,
               log: Any = None) -> dict[str, Any]:
    """Train ``model`` in place for ``plan.steps`` steps; returns a summary for the checkpoint meta."""
    from tqdm import tqdm

    torch.manual_seed(plan.seed)
    model.to(memory_format=torch.channels_last)
    kind = getattr(model, "head_kind", "heatmap")
    switch = plan.steps if kind == "heatmap" else int(plan.steps * plan.mse_fraction)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    t0 = time.time()
    losses: list[float] = []
    stopped_early = False
    bar = tqdm(total=plan.steps, desc=desc, unit="step", mininterval=5.0)
    step = 0
    for step, batch in enumerate(batches(plan.seed, plan.batch_size, workers)):
        if step >= plan.steps:
            break
        if plan.max_minutes is not None and time.time() - t0 > plan.max_minutes * 60:
            stopped_early = True
            break
        phase = "mse" if step < switch else "probpose"
        if step == switch and kind == "probmap":
            # new loss scale: restart the moments, keep the weights
            opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, plan) if phase == "mse" else _lr_at(step - switch, _sub(plan, switch))
        losses.append(train_step(model, batch, opt, phase))
        bar.update(1)
        if step % 50 == 0:
            recent = sum(losses[-50:]) / len(losses[-50:])
            bar.set_postfix(loss=f"{recent:.4f}", phase=phase)
            if log is not None:
                print(f"{desc} step {step} phase {phase} loss {recent:.5f} t {time.time() - t0:.0f}s",
                      file=log, flush=True)
    bar.close()
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    done = min(step, plan.steps) if stopped_early else plan.steps
    if stopped_early:
        print(f"WARNING: {desc} stopped at step {done}/{plan.steps} after {plan.max_minutes} min "
              "(machine busier than planned); accuracy will be lower")
    return {"steps": done, "planned_steps": plan.steps, "batch_size": plan.batch_size, "lr": plan.lr,
            "seed": plan.seed, "minutes": round((time.time() - t0) / 60, 2), "head": kind,
            "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:]))}


def _sub(plan: TrainPlan, start: int) -> TrainPlan:
    """The schedule of the second phase: its own warm-up and cosine over the remaining steps."""
    return TrainPlan(steps=max(1, plan.steps - start), batch_size=plan.batch_size, lr=plan.lr * 0.5,
                     seed=plan.seed)


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """MMPose-style ``{'state_dict', 'meta'}``; plain types only so ``weights_only=True`` loads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta": meta}, path)
    return path
