"""DynPose router training on cached crops (both pose nets frozen, docs/DESIGN.md section 2).

Why cache F0 and not crops: the router's first step (channel mean + max,
2x2 average pool) has no weights, so a 1x128x96 float16 map per crop
(24 KB instead of 590 KB) is all the training needs; epochs then cost only
the router itself. :func:`router_from_f0` runs the router's stages on it, and
a test pins it to ``Router.forward`` so the two cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .infer import CropSet
from .metrics import okd, router_targets, spearman


def router_from_f0(router: nn.Module, f0: torch.Tensor) -> torch.Tensor:
    """The router's score [N] from precomputed F0 maps (everything after F0 in ``Router.forward``)."""
    f4 = router.stage4(router.stage3(router.stage2(router.stage1(f0))))
    return torch.sigmoid(router.mlp(torch.flatten(f4, 1))).reshape(-1)


def crop_targets(cs: CropSet, coco: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target, valid, D_s, D_l) per crop; crops without a matched annotation are invalid."""
    anns = coco["annotations"]
    n = len(cs)
    gt = np.zeros((n, 17, 3))
    area = np.ones(n)
    matched = cs.gt_index >= 0
    for k in np.flatnonzero(matched):
        a = anns[cs.gt_index[k]]
        gt[k] = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        area[k] = a.get("area") or a["bbox"][2] * a["bbox"][3]
    d_s = okd(cs.preds["small"], gt, area)
    d_l = okd(cs.preds["large"], gt, area)
    target, valid = router_targets(d_s, d_l)
    valid &= matched & ((gt[..., 2] > 0).sum(-1) > 0)
    return target, valid, d_s, d_l


def with_empty_boxes(
    target: np.ndarray, valid: np.ndarray, gt_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(target, use): the crops the router learns from.

    Matched crops keep their target; boxes matched to no annotated person
    (false positives, boxes cut too badly to reach IoU 0.3) join with target
    0, since neither net can score there. Left out, the router scores them
    at random: on a synthetic test set they were 12 % of the crops with a
    mean score above the matched crops' (0.24 vs 0.21), and ranking them
    last lifted the recovery of the router's top half from 73 % to 87 % of
    the large-small gap.
    """
    empty = np.asarray(gt_index) == -1
    return np.where(empty, 0.0, target).astype(np.float32), valid | empty


def fit_router(
    router: nn.Module,
    f0: np.ndarray,
    target: np.ndarray,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    val: tuple | None = None,
    desc: str = "router",
    log: Any = None,
) -> dict[str, Any]:
    """Loss_r = (s - target)^2 over the valid crops, with horizontal flips as augmentation.

    ``val`` = (f0, target) of held-out crops: the epoch with the best Spearman
    on them is kept (the router is tiny and overfits a few thousand crops).
    """
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_all = torch.from_numpy(f0)
    y_all = torch.from_numpy(target.astype(np.float32))
    n = len(x_all)
    opt = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    best = (-2.0, None, -1)
    history = []
    for ep in tqdm(range(epochs), desc=desc, unit="epoch", mininterval=5.0):
        router.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            x = x_all[idx].float()
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = ((router_from_f0(router, x) - y_all[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        rec = {"epoch": ep, "loss": total / n}
        if val is not None:
            rec["val_spearman"] = spearman(predict_f0(router, val[0]), val[1])
            if rec["val_spearman"] > best[0]:
                best = (rec["val_spearman"], {k: v.clone() for k, v in router.state_dict().items()}, ep)
        history.append(rec)
        if log is not None:
            print(f"{desc} {rec}", file=log, flush=True)
    if best[1] is not None:
        router.load_state_dict(best[1])
    router.eval()
    return {
        "epochs": epochs,
        "best_epoch": best[2],
        "val_spearman": best[0] if val is not None else None,
        "final_loss": history[-1]["loss"],
        "n_train": n,
    }


@torch.no_grad()
def predict_f0(router: nn.Module, f0: np.ndarray, batch_size: int = 512) -> np.ndarray:
    router.eval()
    out = [
        router_from_f0(router, torch.from_numpy(f0[s : s + batch_size]).float())
        for s in range(0, len(f0), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)
