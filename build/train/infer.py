"""Run pose nets (and the router) over a COCO-format set, crops made by the runtime.

One pass per dataset collects, for every box: the crop's image id, box and
detector score, each net's image-space keypoints and scores, and the router
score. Routing policies and the router's training targets are then cheap
numpy over these arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from runtime.errors import EXIT_INPUT, register_expected
from runtime.heads.base import DecodeContext
from runtime.heads.grid import heatmap_to_image
from runtime.heads.registry import decoder_for
from runtime.pose.preprocess import HW, INPUT_HW, CropWindows, sanitize_boxes
from runtime.tracking.tracker import iou_matrix


@dataclass
class CropSet:
    """Everything known about N crops; ``gt_index`` = matched annotation row or -1."""

    image_ids: np.ndarray
    boxes: np.ndarray
    det_scores: np.ndarray
    gt_index: np.ndarray
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # role -> [N,17,3] x, y, score
    router: np.ndarray | None = None  # [N]
    f0: np.ndarray | None = None  # [N,1,H/2,W/2] float16 router input maps (the router's crop size)

    def __len__(self) -> int:
        return len(self.image_ids)


def decode_net(
    net: nn.Module, outputs: tuple[torch.Tensor, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A pose net's outputs decoded as the runtime decodes them: (coords, scores, the grid they lie on).

    Every output goes to the decoder by name (a SimCC head needs both axes) and the grid comes
    from the decoder (a heatmap's 64x48, SimCC's input pixels), not a fixed heatmap size."""
    outs = {name: o.float().numpy() for name, o in zip(net.output_names, outputs)}
    ctx = DecodeContext(input_hw=tuple(getattr(net, "input_hw", (256, 192))))
    got = decoder_for(net.head_kind, outs).decode(outs, ctx)
    return got.coords, got.scores, got.grid_hw


def net_hw(net: nn.Module) -> HW:
    """The crop (H, W) a built net takes (PoseNet/router ``input_hw``), INPUT_HW where it says none."""
    hw = getattr(net, "input_hw", None) or INPUT_HW
    return (int(hw[0]), int(hw[1]))


def crop_sizes(nets: dict[str, nn.Module], router: nn.Module | None) -> dict[str, HW]:
    """Each role's crop size; the router (and its F0 maps) reads the small net's crops."""
    sizes = {role: net_hw(net) for role, net in nets.items()}
    sizes["router"] = net_hw(router) if router is not None else sizes.get("small", INPUT_HW)
    return sizes


def router_f0(x: torch.Tensor) -> torch.Tensor:
    """docs/DESIGN.md section 2's F0: channel mean + channel max, 2x2 average pool (the router's first step)."""
    return torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True) + x.amax(dim=1, keepdim=True), 2)


class ImageMissing(FileNotFoundError):
    """An image named in the COCO file is not in the images folder (exit 2 at the CLI boundary)."""


register_expected(ImageMissing, EXIT_INPUT)


def load_coco(gt_json: str | Path) -> dict:
    p = Path(gt_json)
    if not p.is_file():
        raise FileNotFoundError(
            f"COCO keypoints file {p} not found; pass --data path/to/person_keypoints.json"
        )
    return json.loads(p.read_text())


def _people_by_image(anns: list[dict]) -> dict[int, list[int]]:
    """Annotation rows per image, for people that can be scored (not crowd, some keypoints)."""
    by_img: dict[int, list[int]] = {}
    for i, a in enumerate(anns):
        if a.get("iscrowd", 0) == 0 and a.get("num_keypoints", 1) > 0:
            by_img.setdefault(a["image_id"], []).append(i)
    return by_img


def _matched_detections(
    coco: dict, dets: list[dict], by_img: dict[int, list[int]], min_iou: float
) -> list[tuple[int, np.ndarray, float, int]]:
    """Each detection with the annotation row of highest IoU (>= min_iou), else -1."""
    anns = coco["annotations"]
    dets_by: dict[int, list[dict]] = {}
    for d in dets:
        dets_by.setdefault(d["image_id"], []).append(d)
    out = []
    for img in coco["images"]:
        ds = dets_by.get(img["id"], [])
        if not ds:
            continue
        db = np.array([d["bbox"] for d in ds], np.float64)
        rows = by_img.get(img["id"], [])
        match = np.full(len(ds), -1)
        if rows:
            iou = iou_matrix(db, np.array([anns[r]["bbox"] for r in rows], np.float64))
            best = iou.argmax(1)
            ok = iou[np.arange(len(ds)), best] >= min_iou
            match[ok] = np.array(rows)[best[ok]]
        out += [(img["id"], db[k], float(ds[k]["score"]), int(match[k])) for k in range(len(ds))]
    return out


def _gt_boxes(
    coco: dict, by_img: dict[int, list[int]], jitter: int, seed: int
) -> list[tuple[int, np.ndarray, float, int]]:
    """The annotations' own boxes, each followed by ``jitter`` seeded jittered copies."""
    anns = coco["annotations"]
    rng = np.random.default_rng(seed)
    out = []
    for img in coco["images"]:
        for r in by_img.get(img["id"], []):
            b = np.array(anns[r]["bbox"], np.float64)
            out.append((img["id"], b, 1.0, r))
            for _ in range(jitter):
                c = b[:2] + b[2:] / 2 + rng.normal(0, 0.08, 2) * b[2:]
                wh = b[2:] * np.exp(rng.normal(0, 0.15, 2))
                out.append((img["id"], np.concatenate([c - wh / 2, wh]), 1.0, r))
    return out


def box_list(
    coco: dict, dets: list[dict] | None, jitter: int = 0, seed: int = 0, min_iou: float = 0.3
) -> list[tuple[int, np.ndarray, float, int]]:
    """(image_id, box, score, gt row) per crop.

    With detections: each box is matched to the annotation of highest IoU
    (>= ``min_iou``, else -1: a false positive). Without: the annotations'
    own boxes plus ``jitter`` jittered copies each (box diversity for COCO train).
    """
    by_img = _people_by_image(coco["annotations"])
    if dets is not None:
        return _matched_detections(coco, dets, by_img, min_iou)
    return _gt_boxes(coco, by_img, jitter, seed)


def _empty_cropset(
    items: list, nets: dict[str, nn.Module], router: nn.Module | None, keep_f0: bool
) -> CropSet:
    """A CropSet for ``items`` with zeroed prediction arrays for every net (and the router)."""
    n = len(items)
    cs = CropSet(
        np.array([it[0] for it in items], np.int64),
        np.array([it[1] for it in items]).reshape(-1, 4),
        np.array([it[2] for it in items]),
        np.array([it[3] for it in items], np.int64),
    )
    for role in nets:
        cs.preds[role] = np.zeros((n, 17, 3), np.float32)
    cs.router = np.zeros(n, np.float32) if router is not None else None
    h, w = crop_sizes(nets, router)["router"]
    cs.f0 = np.zeros((n, 1, h // 2, w // 2), np.float16) if keep_f0 else None
    return cs


class _Batches:
    """Crops gathered into batches of ``size``; each full batch runs through every net (each on
    the box's crop at its own input size) and the results land in the CropSet rows the crops
    came from."""

    def __init__(self, cs: CropSet, nets: dict[str, nn.Module], router: nn.Module | None, size: int) -> None:
        self.cs, self.nets, self.router, self.size = cs, nets, router, size
        self.sizes = crop_sizes(nets, router)
        self.pending: list[tuple[int, dict[HW, np.ndarray], dict[HW, tuple[np.ndarray, np.ndarray]]]] = []

    def add(
        self, k: int, crops: dict[HW, np.ndarray], windows: dict[HW, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Box ``k``'s crop and window (centre, scale) at each size in ``self.sizes``."""
        self.pending.append((k, crops, windows))
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        cs, pending = self.cs, self.pending
        idx = np.array([p[0] for p in pending])
        xs = {hw: torch.from_numpy(np.stack([p[1][hw] for p in pending])) for hw in set(self.sizes.values())}
        for role, net in self.nets.items():
            hw = self.sizes[role]
            centers = np.stack([p[2][hw][0] for p in pending])
            scales = np.stack([p[2][hw][1] for p in pending])
            coords, scores, grid_hw = decode_net(net, net(xs[hw]))
            img_xy = heatmap_to_image(coords, centers, scales, grid_hw)
            cs.preds[role][idx] = np.concatenate([img_xy, scores[..., None]], axis=-1)
        x = xs[self.sizes["router"]]
        if self.router is not None and cs.router is not None:
            cs.router[idx] = self.router(x)[0].reshape(-1).numpy()
        if cs.f0 is not None:
            cs.f0[idx] = router_f0(x).numpy().astype(np.float16)
        pending.clear()


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ImageMissing(
            f"image missing or unreadable ({path}, --images): "
            "pass --images as the folder holding the COCO file_name entries"
        )
    return image


def _crop_image(image: np.ndarray, items: list, ks: list[int], cs: CropSet, batches: _Batches) -> None:
    """The image's boxes cropped as the runtime does (at each net's size) and queued; boxes the
    hygiene drops get gt_index -2 (no prediction, never scored)."""
    boxes = np.stack([items[k][1] for k in ks])
    clean, kept, _ = sanitize_boxes(boxes, image.shape[:2], max_boxes=None)
    windows = CropWindows(clean)
    crops = windows.crops_by_size(image, batches.sizes.values())
    at = {hw: windows.at(hw) for hw in crops}
    ks_kept = [ks[j] for j in kept]
    for j, k in enumerate(ks_kept):
        batches.add(k, {hw: c[j] for hw, c in crops.items()}, {hw: (c[j], s[j]) for hw, (c, s) in at.items()})
    for k in set(ks) - set(ks_kept):
        cs.gt_index[k] = -2


@torch.no_grad()
def run_crops(
    coco: dict,
    images_dir: str | Path,
    items: list,
    nets: dict[str, nn.Module],
    router: nn.Module | None = None,
    keep_f0: bool = False,
    batch: int = 64,
    progress: str | None = None,
) -> CropSet:
    """Crop every item with the runtime's preprocessing and run every net on it."""
    images_dir = Path(images_dir)
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    by_img: dict[int, list[int]] = {}
    for k, it in enumerate(items):
        by_img.setdefault(it[0], []).append(k)
    cs = _empty_cropset(items, nets, router, keep_f0)
    for m in list(nets.values()) + ([router] if router is not None else []):
        m.eval()
    batches = _Batches(cs, nets, router, batch)
    ids = list(by_img)
    if progress:
        from tqdm import tqdm

        ids = tqdm(ids, desc=progress, leave=False, mininterval=5.0)
    for img_id in ids:
        _crop_image(_read_image(images_dir / files[img_id]), items, by_img[img_id], cs, batches)
    batches.flush()
    return cs
