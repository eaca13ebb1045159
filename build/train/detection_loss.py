"""RTMDet's training loss, written from MMDet's documented behaviour (why by hand: MMDet is not
a dependency, and its loss needs mmengine's registry): the ``DynamicSoftLabelAssigner`` on the
current predictions, quality focal loss on the class logits with the matched IoU as the soft
target, GIoU on the boxes weighted by that IoU, both over the sum of matched IoUs
(``RTMDetHead.loss_by_feat``). build.train.detector trains the synthetic person detector with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..models.rtmdet import RTMDet, priors

SIZE = 320  # the detector fixture's input (build.train.detector)
TOPK = 13
IOU_WEIGHT = 3.0
CENTER_RADIUS = 3.0
QFL_BETA = 2.0
GIOU_WEIGHT = 2.0
INF = 1e8
EPS = 1e-7


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[M,4] x [N,4] xyxy -> [M,N] IoU."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + EPS)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise 1 - GIoU of paired xyxy boxes [N,4] -> [N]."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    ap = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(-1)
    at = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(-1)
    union = ap + at - inter + EPS
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).prod(-1)
    return 1 - (inter / union - (hull - union) / (hull + EPS))


def quality_focal_loss(logits: torch.Tensor, score: torch.Tensor, beta: float = QFL_BETA) -> torch.Tensor:
    """Elementwise QFL (sigmoid, one class): BCE(logit, q) * |q - sigmoid(logit)| ** beta, where
    q is the matched IoU on positives and 0 elsewhere (a negative's term is BCE(logit, 0) * p**beta)."""
    p = logits.sigmoid()
    return F.binary_cross_entropy_with_logits(logits, score, reduction="none") * (score - p).abs().pow(beta)


def assign(
    logits: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor, strides: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic soft-label assignment of one image (MMDet's ``DynamicSoftLabelAssigner``, one class).

    ``logits`` [A] class logits, ``boxes`` [A,4] decoded predictions (xyxy), ``points`` [A,2]
    priors, ``strides`` [A], ``gt`` [G,4] xyxy. Returns the matched gt per prior [A] (-1: none)
    and the matched IoU [A] (0 where none), with no gradient."""
    a = points.shape[0]
    matched = torch.full((a,), -1, dtype=torch.long)
    iou_of = torch.zeros(a)
    if gt.numel() == 0:
        return matched, iou_of
    with torch.no_grad():
        inside = (
            (points[:, None, 0] > gt[None, :, 0])
            & (points[:, None, 1] > gt[None, :, 1])
            & (points[:, None, 0] < gt[None, :, 2])
            & (points[:, None, 1] < gt[None, :, 3])
        )  # [A,G]
        valid = inside.any(1)
        if not valid.any():
            return matched, iou_of
        idx = valid.nonzero().squeeze(1)
        pts, st, inside_v = points[idx], strides[idx], inside[idx]
        centre = (gt[:, :2] + gt[:, 2:]) / 2
        dist = (pts[:, None, :] - centre[None]).pow(2).sum(-1).sqrt() / st[:, None]
        centre_cost = torch.pow(10.0, dist - CENTER_RADIUS)
        ious = box_iou(boxes[idx].float(), gt)  # [V,G]
        iou_cost = -torch.log(ious + EPS) * IOU_WEIGHT
        lg = logits[idx][:, None].expand_as(ious)
        cls_cost = F.binary_cross_entropy_with_logits(lg, ious, reduction="none") * (
            ious - lg.sigmoid()
        ).abs().pow(2)
        cost = cls_cost + iou_cost + centre_cost + (~inside_v).float() * INF
        k = min(TOPK, idx.numel())
        dyn_k = ious.topk(k, dim=0).values.sum(0).int().clamp(min=1)
        pick = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(gt.shape[0]):
            pick[cost[:, g].topk(int(min(dyn_k[g], idx.numel())), largest=False).indices, g] = True
        many = pick.sum(1) > 1
        if many.any():
            best = cost[many].argmin(1)
            pick[many] = False
            pick[many.nonzero().squeeze(1), best] = True
        rows = pick.any(1)
        g_of = pick.float().argmax(1)
        sel = idx[rows]
        matched[sel] = g_of[rows]
        iou_of[sel] = ious[rows, g_of[rows]]
    return matched, iou_of


def flat_outputs(model: RTMDet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised BGR batch -> class logits [N,A] and distances [N,A,4] (l, t, r, b in pixels)."""
    cls_scores, bbox_preds = model(x)
    logits = torch.cat([c.flatten(2) for c in cls_scores], 2)[:, 0]
    dist = torch.cat([d.flatten(2) for d in bbox_preds], 2).transpose(1, 2)
    return logits, dist


def prior_grid(size: int, strides: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior points [A,2] and their strides [A], in the head's flattening order."""
    pts = priors((size, size), strides).t().contiguous()
    st = torch.cat([torch.full((math.ceil(size / s) ** 2,), float(s)) for s in strides])
    return pts, st


def detection_loss(
    model: RTMDet, x: torch.Tensor, gts: Sequence[torch.Tensor], size: int = SIZE
) -> tuple[torch.Tensor, dict[str, float]]:
    """The RTMDet training loss of one batch (QFL + 2 x GIoU over the summed matched IoU)."""
    logits, dist = flat_outputs(model, x)
    pts, st = prior_grid(size, model.bbox_head.strides)
    boxes = torch.cat([pts[None] - dist[..., :2], pts[None] + dist[..., 2:]], -1)
    targets = torch.zeros_like(logits)
    pos_pred, pos_gt, pos_w = [], [], []
    for i, gt in enumerate(gts):
        matched, iou = assign(logits[i].detach(), boxes[i].detach(), pts, st, gt)
        pos = matched >= 0
        targets[i, pos] = iou[pos]
        pos_pred.append(boxes[i, pos])
        pos_gt.append(gt[matched[pos]])
        pos_w.append(iou[pos])
    w = torch.cat(pos_w)
    norm = w.sum().clamp(min=1.0)
    cls = quality_focal_loss(logits, targets).sum() / norm
    if w.numel():
        box = (giou_loss(torch.cat(pos_pred), torch.cat(pos_gt)) * w).sum() / norm * GIOU_WEIGHT
    else:
        box = boxes.sum() * 0.0
    return cls + box, {"cls": float(cls.detach()), "box": float(box.detach()), "pos": float(w.numel())}
