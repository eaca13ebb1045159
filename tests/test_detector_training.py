"""build.train.detector: the RTMDet recipe's losses and assigner on hand-made boxes (values
computed by hand), the data's letterbox, and a short training run that learns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from build.train import detection_loss as L
from build.train import detector as D


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_giou_loss_on_hand_made_boxes() -> None:
    # overlap: inter 1, union 7, hull 9 -> GIoU 1/7 - 2/9; disjoint: union 2, hull 3 -> -1/3
    got = L.giou_loss(
        _t([0, 0, 2, 2], [0, 0, 1, 1], [5, 5, 9, 7]), _t([1, 1, 3, 3], [2, 0, 3, 1], [5, 5, 9, 7])
    )
    assert got.tolist() == pytest.approx([1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.0], abs=1e-5)


def test_quality_focal_loss_on_hand_made_scores() -> None:
    ln2 = math.log(2)
    logits = torch.tensor([0.0, 0.0, 0.0, math.log(3.0), -2.0])
    q = torch.tensor([0.0, 1.0, 0.5, 0.75, 0.0])
    p5 = 1 / (1 + math.e**2)  # sigmoid(-2)
    want = [ln2 * 0.25, ln2 * 0.25, 0.0, 0.0, -math.log(1 - p5) * p5**2]
    assert L.quality_focal_loss(logits, q).tolist() == pytest.approx(want, abs=1e-6)


def _grid(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return L.prior_grid(size, (8, 16, 32))


def _index(pts: torch.Tensor, st: torch.Tensor, x: float, y: float, s: float) -> int:
    hit = ((pts[:, 0] == x) & (pts[:, 1] == y) & (st == s)).nonzero()
    return int(hit[0, 0])


def test_assigner_dynamic_k_is_the_sum_of_the_top_ious() -> None:
    pts, st = _grid()
    gt = _t([4, 4, 20, 20])  # priors strictly inside: (8|16, 8|16) at stride 8, (16, 16) at 16
    boxes = torch.tensor([[100.0, 100.0, 101.0, 101.0]]).repeat(len(pts), 1)
    a, b, c = _index(pts, st, 8, 8, 8), _index(pts, st, 16, 16, 8), _index(pts, st, 8, 16, 8)
    out = _index(pts, st, 0, 0, 8)  # outside the box: never a candidate, whatever it predicts
    boxes[a], boxes[b], boxes[c], boxes[out] = gt[0], _t([4, 4, 20, 16])[0], _t([4, 4, 12, 20])[0], gt[0]
    matched, iou = L.assign(torch.zeros(len(pts)), boxes, pts, st, gt)
    # IoUs 1, 0.75, 0.5 -> dynamic k = int(2.25) = 2: the two cheapest (best IoU) priors
    assert (matched >= 0).nonzero().flatten().tolist() == sorted([a, b])
    assert matched[a].item() == 0 and matched[b].item() == 0
    assert iou[a].item() == pytest.approx(1.0, abs=1e-5) and iou[b].item() == pytest.approx(0.75, abs=1e-5)
    assert matched[out].item() == -1 and iou[c].item() == 0.0


def test_assigner_gives_a_prior_inside_two_boxes_to_the_cheaper_one_and_handles_no_boxes() -> None:
    pts, st = _grid()
    gts = _t([4, 4, 20, 20], [12, 12, 28, 28])
    p = _index(pts, st, 16, 16, 8)  # inside both
    boxes = torch.tensor([[100.0, 100.0, 101.0, 101.0]]).repeat(len(pts), 1)
    boxes[p] = gts[1]  # predicts the second box exactly
    matched, iou = L.assign(torch.zeros(len(pts)), boxes, pts, st, gts)
    assert matched[p].item() == 1 and iou[p].item() == pytest.approx(1.0, abs=1e-5)
    none, zero = L.assign(torch.zeros(len(pts)), boxes, pts, st, torch.zeros((0, 4)))
    assert (none == -1).all() and (zero == 0).all()


def test_place_letterboxes_like_the_runtime_and_keeps_boxes_on_their_people() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((480, 640, 3), np.uint8)
    img[100:300, 200:260] = 255
    canvas, boxes = D.place(rng, img, np.array([[200.0, 100.0, 260.0, 300.0]]), augment=False)
    assert canvas.shape == (320, 320, 3) and (canvas[:40] == 114).all()  # (320 - 240) / 2 rows of grey
    assert boxes[0].tolist() == pytest.approx([100.0, 90.0, 130.0, 190.0])
    for seed in range(5):  # augmented: the box still frames the white figure
        c, b = D.place(np.random.default_rng(seed), img, np.array([[200.0, 100.0, 260.0, 300.0]]))
        x0, y0, x1, y1 = (int(round(v)) for v in b[0])
        inside = c[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
        assert inside.size and inside.mean() > 200


def _top_box_iou(model: torch.nn.Module, x: torch.Tensor, gts: list[torch.Tensor], side: int) -> float:
    """IoU with the nearest person of image 0's best-scored box (batch statistics: 40 steps do not
    settle BN's running ones)."""
    with torch.no_grad():
        logits, dist = L.flat_outputs(model.train(), x)
    pts, _ = L.prior_grid(side, model.bbox_head.strides)
    top = int(logits[0].argmax())
    box = torch.cat([pts[top] - dist[0, top, :2], pts[top] + dist[0, top, 2:]])
    return L.box_iou(box[None], gts[0]).max().item()


def test_a_short_run_on_one_synthetic_batch_learns() -> None:
    torch.set_num_threads(1)
    x, gts = next(D.batches(0, 2, [], side=96))
    assert all(len(g) for g in gts), "the drawn batch has people"
    model = D.new_model(0)
    assert _top_box_iou(model, x, gts, 96) < 0.3  # untrained: its best score sits anywhere
    opt = D.DetTrainOptions(iters=40, batch=2, crop=96, lr=4e-3, warmup=1, minutes=10.0)
    losses = D.train(model, opt, [], log=False, data=itertools.repeat((x, gts)))
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    # the IoU-weighted loss first rises (boxes start to overlap their people: the weights grow),
    # then falls as boxes and scores fit
    peak = int(np.argmax(losses))
    assert peak < 20 and np.mean(losses[-5:]) < 0.5 * losses[peak]
    assert _top_box_iou(model, x, gts, 96) > 0.5  # its best-scored box sits on a person
