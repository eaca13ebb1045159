"""``python -m build.router``: train the DynPose router for a pair of frozen pose nets.

    python -m build.router --config dyn-r50-h32 --small-ckpt res50.pth --large-ckpt hrnet_w32.pth \\
        --data coco/annotations/person_keypoints_train2017.json --images coco/train2017 --out router.pth

Every crop is made by ``runtime.pose.preprocess`` (the run-time crops), both nets
predict it, D_s and D_l (Object Keypoint Distance, docs/DESIGN.md section 2) give
the target (D_s - D_l)/D_s, and the router fits it with (s - target)^2,
skipping crops where D_s ~ 0. Boxes are the annotations' own plus jittered
copies (box diversity), or a detections file (``--dets``) matched by IoU;
detector boxes that match no annotated person are fitted to 0, since
neither net can score there.
The last 10% of images are held out; the epoch with the best Spearman
correlation there is kept and reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.cli.args import (
    OneLineParser,
    existing_dir,
    existing_file,
    nonneg_int,
    number,
    out_file_in,
    positive_int,
)
from runtime.errors import InputError, guarded

from .artifacts import build_network, check_zoo_names, load_weights
from .checkpoint import TRUST_FLAG
from .configs import get_config
from .train.infer import box_list, run_crops
from .train.metrics import spearman
from .train.router_fit import crop_targets, fit_router, predict_f0, with_empty_boxes
from .train.trainer import save_checkpoint
from .zoo import checkpoint_arg


def collect(
    coco: dict,
    images: str | Path,
    small: torch.nn.Module,
    large: torch.nn.Module,
    dets: list | None,
    jitter: int,
    seed: int,
    max_images: int | None = None,
    progress: str | None = "crops",
) -> dict[str, Any]:
    """Run both frozen nets over the crops; return F0 maps, targets and the D's per crop."""
    if max_images is not None:
        keep = {im["id"] for im in coco["images"][:max_images]}
        coco = {**coco, "images": [im for im in coco["images"] if im["id"] in keep]}
    items = box_list(coco, dets, jitter=jitter, seed=seed)
    if not items:
        raise InputError(
            "no crops: no person annotations with keypoints (or no detections matched them)",
            "--data / --dets",
            "pass a COCO person_keypoints file with annotated people",
        )
    cs = run_crops(coco, images, items, {"small": small, "large": large}, keep_f0=True, progress=progress)
    target, valid, d_s, d_l = crop_targets(cs, coco)
    return {"crops": cs, "f0": cs.f0, "target": target, "valid": valid, "d_small": d_s, "d_large": d_l}


def split_by_image(image_ids: np.ndarray, holdout: float, seed: int) -> np.ndarray:
    """True for crops of held-out images (whole images, so near-duplicate crops never straddle the split)."""
    ids = np.unique(image_ids)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(ids)[: max(1, int(round(len(ids) * holdout)))].tolist())
    return np.array([i in held for i in image_ids])


def train_router(
    cfg_name: str,
    small_ckpt: str | None,
    large_ckpt: str | None,
    data: str,
    images: str,
    out: str | Path,
    dets: str | None = None,
    jitter: int = 2,
    epochs: int = 30,
    holdout: float = 0.1,
    seed: int = 0,
    max_images: int | None = None,
    log: Any = None,
    trust: bool = False,
) -> dict[str, Any]:
    cfg = get_config(cfg_name)
    nets = {}
    check_zoo_names(cfg, {"small": small_ckpt, "large": large_ckpt})  # before anything downloads
    for role, ck in (("small", small_ckpt), ("large", large_ckpt)):
        net = build_network(cfg, role)
        info = load_weights(net, cfg, role, ck, seed, trust)
        if info["source"] != "checkpoint":
            raise SystemExit(
                f"error: the {role} net has no weights; a router for random nets is "
                f"meaningless (--{role}-ckpt): pass --{role}-ckpt (or a config with bundled weights)"
            )
        nets[role] = net.eval().requires_grad_(False)
    coco = _read_json(data, "--data", dict)
    if not isinstance(coco.get("images"), list) or not isinstance(coco.get("annotations"), list):
        raise InputError(
            f"{data} is not a COCO keypoints file (no 'images' / 'annotations' lists)",
            "--data",
            "pass person_keypoints_*.json",
        )
    det_list = _read_json(dets, "--dets", list) if dets else None
    torch.manual_seed(seed)
    got = collect(coco, images, nets["small"], nets["large"], det_list, jitter, seed, max_images)
    held = split_by_image(got["crops"].image_ids, holdout, seed)
    n_tr, n_va = int((got["valid"] & ~held).sum()), int((got["valid"] & held).sum())
    if n_tr < 8 or n_va < 4:
        raise InputError(
            f"only {n_tr} training / {n_va} held-out crops with D_s > 0",
            "--data / --max-images",
            "use more images (or --jitter) to train a router",
        )
    fit_target, use = with_empty_boxes(got["target"], got["valid"], got["crops"].gt_index)
    tr = use & ~held
    router = build_network(cfg, "router")
    summary = fit_router(
        router,
        got["f0"][tr],
        fit_target[tr],
        epochs=epochs,
        seed=seed,
        val=(got["f0"][use & held], fit_target[use & held]),
        log=log,
    )
    va = got["valid"] & held  # the reported correlation: crops with a person, true relative error reduction
    rho = spearman(predict_f0(router, got["f0"][va]), got["target"][va])
    meta = {
        "config": cfg_name,
        "role": "router",
        "data": str(data),
        "n_crops": int(len(got["valid"])),
        "n_train": int(tr.sum()),
        "n_empty_boxes": int((use & ~got["valid"]).sum()),
        "n_heldout": n_va,
        "heldout_spearman": rho,
        "mean_target": float(got["target"][got["valid"]].mean()),
        **summary,
    }
    save_checkpoint(router, out, meta)
    return meta


def _read_json(path: str | Path, flag: str, kind: type) -> Any:
    """A JSON file of the expected top-level type, or one line naming the flag."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(
            f"cannot read {path} as JSON ({str(e).splitlines()[0][:80]})",
            flag,
            "pass a COCO-format JSON file",
        ) from None
    if not isinstance(obj, kind):
        raise InputError(
            f"{path} holds a JSON {type(obj).__name__}, expected a {kind.__name__}",
            flag,
            "pass a COCO-format JSON file",
        )
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(
        prog="python -m build.router",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", required=True, help="pipeline config naming the small/large/router architectures"
    )
    p.add_argument(
        "--small-ckpt",
        default=None,
        type=checkpoint_arg,
        help="small net checkpoint: a .pth path or a released checkpoint's name (python -m build.zoo "
        "list) (default: the config's bundled one)",
    )
    p.add_argument(
        "--large-ckpt",
        default=None,
        type=checkpoint_arg,
        help="large net checkpoint: a .pth path or a released checkpoint's name (python -m build.zoo "
        "list) (default: the config's bundled one)",
    )
    p.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow checkpoints that need full unpickling (runs code from the file)",
    )
    p.add_argument(
        "--data", required=True, type=existing_file, help="COCO person_keypoints JSON (e.g. COCO train2017)"
    )
    p.add_argument(
        "--images", required=True, type=existing_dir, help="folder holding the images named in --data"
    )
    p.add_argument(
        "--dets",
        default=None,
        type=existing_file,
        help="optional detections JSON (COCO results) to crop instead of GT boxes",
    )
    p.add_argument(
        "--jitter",
        type=number(int, lo=0, hi=100),
        default=2,
        help="jittered copies per GT box (without --dets)",
    )
    p.add_argument("--epochs", type=number(int, lo=1, hi=10_000), default=30)
    p.add_argument("--max-images", type=positive_int, default=None, help="use only the first N images")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument(
        "--out",
        default=".",
        type=out_file_in("router.pth", ".pth"),
        metavar="DIR",
        help="folder for router.pth (default: the current folder)",
    )
    a = p.parse_args(argv)
    meta = train_router(
        a.config,
        a.small_ckpt,
        a.large_ckpt,
        a.data,
        a.images,
        a.out,
        a.dets,
        a.jitter,
        a.epochs,
        seed=a.seed,
        max_images=a.max_images,
        trust=a.trust_checkpoint,
    )
    print(
        f"router -> {a.out}: {meta['n_train']} training crops, held-out Spearman {meta['heldout_spearman']:.3f}"
    )
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    return guarded(main, argv, prog="python -m build.router")


if __name__ == "__main__":
    sys.exit(cli())
