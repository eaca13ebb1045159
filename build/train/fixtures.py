"""``python -m build.train.fixtures --seed 0``: regenerate the trained fixtures of ``fixture-dyn``.

``--config fixture-rtm --reuse small,large`` does the router and the table for another fixture
config (its nets trained apart: ``python -m build.train.rtm_fixture`` for RTMPose-t). Every file
is the one the config names in ``checkpoints`` (its basename, in ``--out``), so configs that share
a net share its file and each keeps its own router; the report of a config other than
fixture-dyn is ``report-<config>.json``.

One command: synthetic COCO sets -> small net -> large net -> router (both
nets frozen) -> AP table on a held-out synthetic set (pycocotools) for the
small net, the large net, DynPose routing at p=50 and random routing at the
same fraction, plus the router's Spearman correlation with the true relative
error reduction. Writes ``build/fixtures/{small,large,router}.pth`` and
``build/fixtures/report.json``.

These weights know synthetic figures, not real people.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from measure.coco_eval import load_gt
from runtime.cli.args import OneLineParser, nonneg_int, number, output_dir, output_file, unit_float
from runtime.errors import InputError, guarded
from runtime.heads.registry import SIMCC
from runtime.pose.routing import fit_thresholds
from runtime.safe_io import atomic_write_text

from ..checkpoint import TRUST_FLAG
from ..models import build_pose_net, build_router
from ..synth.coco import SPLITS, load_photos, split_seed, write_dataset
from ..synth.scene import LEVELS, MIX
from .fixture_files import (
    CONFIG,
    ROLES,
    check_inputs,
    fixture_config,
    load_fixtures,
    load_trained,
    report_file,
    role_file,
)
from .infer import box_list, load_coco, run_crops
from .metrics import ap_of, by_level, dyn_choice, policy_table, spearman
from .router_fit import crop_targets, fit_router, with_empty_boxes
from .trainer import TrainPlan, save_checkpoint, train_pose

REPO = Path(__file__).resolve().parents[2]
# (images per set, steps) at scale 1.0; ~40 min on 2 free cores (small ~13, large ~18, sets and router ~9)
PLAN = {
    "router_images": 3000,
    "calib_images": 600,
    "test_images": 400,
    "small_steps": 2700,
    "large_steps": 2000,
    "router_epochs": 40,
}
MINUTES = {"small": 16.0, "large": 26.0}  # caps that keep a busy machine inside the hour


def scene_tag() -> str:
    """Short hash of the scene levels and mix: cached sets drawn with another mix are never reused."""
    return hashlib.sha1(repr((LEVELS, MIX)).encode()).hexdigest()[:8]


def make_sets(work: Path, seed: int, scale: float, photo_dir: str | None) -> dict[str, dict[str, Path]]:
    photos = load_photos(photo_dir)
    sets = {}
    for name in SPLITS:
        n = max(8, int(PLAN[f"{name}_images"] * scale))
        d = work / name
        done, kp = d / "detections.json", d / "person_keypoints.json"
        if done.is_file() and kp.is_file() and len(json.loads(kp.read_text())["images"]) == n:
            sets[name] = {
                "images": d / "images",
                "keypoints": kp,
                "detections": done,
            }  # same seed -> same files
            continue
        sets[name] = write_dataset(d, n, seed=split_seed(name, seed), photos=photos, progress=True)
    return sets


def crops_of(paths: dict[str, Path], nets: dict, router=None, keep_f0: bool = False, desc: str = ""):
    coco = load_coco(paths["keypoints"])
    dets = json.loads(paths["detections"].read_text())
    cs = run_crops(
        coco, paths["images"], box_list(coco, dets), nets, router=router, keep_f0=keep_f0, progress=desc
    )
    return coco, cs


def format_table(t: dict, rho: float, names: tuple[str, str] = ("fixture-s", "fixture-l")) -> str:
    gap = t["large"] - t["small"]
    rec = (t["dyn"] - t["small"]) / gap if gap > 0 else float("nan")
    rows = [
        (f"small ({names[0]})", t["small"]),
        (f"large ({names[1]})", t["large"]),
        (f"dyn p={t['p']:.0f} (theta {t['theta']})", t["dyn"]),
        (f"random at {100 * t['large_fraction']:.1f}% large", t["random"]),
    ]
    lines = ["| policy | AP |", "| --- | --- |"] + [f"| {n} | {100 * v:.1f} |" for n, v in rows]
    lines.append(
        f"\nlarge - small = {100 * gap:.1f} AP; dyn recovers {100 * rec:.0f}% of it "
        f"with {100 * t['large_fraction']:.1f}% of crops on the large net; "
        f"random std {100 * t['random_std']:.1f}; router Spearman {rho:.3f} (held-out crops)"
    )
    return "\n".join(lines)


def pick_theta(
    calib_paths: dict[str, Path],
    cal,
    scores: np.ndarray,
    p: float,
    grid=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
) -> float:
    """The theta with the best dyn AP on the calibration set (never on the test set); ``scores``
    are the calibration crops' router scores the band is fitted on.

    A high theta puts k1 near the top of the score range, so the band holds the
    crops with the highest predicted gain and k2 clamps at the top score. Only
    bands that keep to the budget count: ties at the top score (a router whose
    hidden units all switch off scores many crops alike) can make a band hold
    more than p % of the calibration crops, and buying AP with extra large-net
    crops is not routing.
    """
    gt = load_gt(calib_paths["keypoints"])
    best = max(
        thetas_within_budget(scores, p, grid),
        key=lambda th: (ap_of(gt, cal, dyn_choice(cal, scores, th, p)[1]), -th),
    )
    return float(best)


def thetas_within_budget(scores: np.ndarray, p: float, grid: Sequence[float]) -> list[float]:
    """The thetas whose band holds at most p % of ``scores`` (plus the one crop the rule may add);
    all of ``grid`` when none does, so a degenerate router still gets a band."""
    n = np.asarray(scores).size
    within = [th for th in grid if fit_thresholds(scores, th, p).large_fraction <= p / 100 + 1.5 / n]
    return within or list(grid)


def evaluate(sets: dict, nets: dict, router, theta: float | None, p: float) -> tuple[dict, float, dict]:
    """Band fitted on the calibration set, AP on the held-out test set, router Spearman on test crops,
    and the same split by scene level."""
    _, cal = crops_of(sets["calib"], nets, router=router, desc="calib crops")
    tcoco, test = crops_of(sets["test"], nets, router=router, desc="test crops")
    calib_scores = cal.router[cal.gt_index != -2]
    if theta is None:
        theta = pick_theta(sets["calib"], cal, calib_scores, p)
    gt = load_gt(sets["test"]["keypoints"])
    table = policy_table(gt, test, calib_scores, theta, p)
    t_target, t_valid, _, _ = crop_targets(test, tcoco)
    _, dyn = dyn_choice(test, calib_scores, theta, p)
    n = len(test)
    levels = by_level(
        gt, test, {"small": np.zeros(n, bool), "large": np.ones(n, bool), "dyn": dyn}, t_target, t_valid
    )
    return table, spearman(test.router[t_valid], t_target[t_valid]), levels


def format_levels(levels: dict[str, dict]) -> str:
    lines = [
        "| scene level | crops | AP small | AP large | AP dyn | dyn share large | mean target | mean router |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {k} | {r['crops']} | {100 * r['small']:.1f} | {100 * r['large']:.1f} | {100 * r['dyn']:.1f} | "
        f"{r['dyn_share']:.2f} | {r['target']:.3f} | {r['router']:.3f} |"
        for k, r in levels.items()
    ]
    return "\n".join(lines)


def _roles(text: str) -> set[str]:
    """argparse type of --resume / --reuse: a comma list of small,large."""
    roles = {r for r in text.split(",") if r}
    bad = roles - {"small", "large"}
    if bad:
        raise argparse.ArgumentTypeError(f"{','.join(sorted(bad))}: only small and large can be named")
    return roles


def _minutes(text: str) -> tuple[float, float]:
    """argparse type of --minutes: 'SMALL,LARGE', two positive numbers."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected two numbers 'SMALL,LARGE'")
    return tuple(number(float, lo=0, lo_open=True)(v) for v in parts)  # type: ignore[return-value]


def _theta(text: str) -> str | float:
    return text if text in ("config", "auto") else unit_float(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(
        prog="python -m build.train.fixtures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument(
        "--config",
        default=CONFIG,
        help="the fixture config whose nets and router this trains (fixture-dyn, or fixture-rtm with "
        "--reuse small,large after python -m build.train.rtm_fixture)",
    )
    p.add_argument(
        "--out", default=str(REPO / "build" / "fixtures"), type=output_dir, help="where the .pth files go"
    )
    p.add_argument(
        "--work",
        default="/tmp/dynpose-fixtures",
        type=output_dir,
        help="scratch folder for the synthetic sets",
    )
    p.add_argument(
        "--scale",
        type=number(float, lo=0, hi=10, lo_open=True),
        default=1.0,
        help="multiply steps and set sizes (0.05 for a smoke run)",
    )
    p.add_argument("--threads", type=number(int, lo=1, hi=256), default=2, help="torch threads for training")
    p.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow .pth files in --out that need full unpickling (runs code from the file)",
    )
    p.add_argument("--photos", default=None, help="background photos (default ../shared/data/coco-mini)")
    p.add_argument("--no-caps", action="store_true", help="ignore the per-net time caps")
    p.add_argument(
        "--resume",
        default="",
        type=_roles,
        help="comma list of pose nets to start from their weights in --out "
        "(train further) instead of from scratch",
    )
    p.add_argument(
        "--minutes",
        default=None,
        type=_minutes,
        help=f"time caps 'SMALL,LARGE' in minutes (default {MINUTES['small']:g},{MINUTES['large']:g})",
    )
    p.add_argument(
        "--theta",
        default="config",
        type=_theta,
        help="'config' (the config's theta), 'auto' (best on the calibration set) or a number",
    )
    p.add_argument("--eval-only", action="store_true", help="score the fixtures already in --out")
    p.add_argument(
        "--reuse",
        default="",
        type=_roles,
        help="comma list of pose nets (small,large) to load from --out "
        "instead of training (e.g. after retraining one of them)",
    )
    p.add_argument("--log", default=None, type=output_file, help="append per-step losses here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    out, work = Path(a.out), Path(a.work) / f"seed{a.seed}-{scene_tag()}"
    cfg = fixture_config(a.config)
    theta = cfg.theta if a.theta == "config" else None if a.theta == "auto" else float(a.theta)
    reuse, resumed = set(a.reuse or ()), set(a.resume or ())
    names = (cfg.small.arch, cfg.large.arch)
    simcc = [r for r in ("small", "large") if getattr(cfg, r).head == SIMCC and r not in reuse]
    if simcc and not a.eval_only:  # one recipe per net: RTMPose-t's has its own init, clipping and aid
        raise InputError(
            f"{cfg.name}'s {simcc[0]} net is RTMPose (SimCC), trained by its own recipe",
            f"--reuse {a.reuse or ''}".strip(),
            f"run python -m build.train.rtm_fixture first, then --reuse {','.join(sorted(reuse | set(simcc)))}",
        )
    check_inputs(out, cfg, set(ROLES) if a.eval_only else reuse | resumed, a.trust_checkpoint)
    if a.photos and not Path(a.photos).is_dir():
        raise InputError(
            "photo folder not found", f"--photos {a.photos}", "pass a folder of .jpg or --photos ''"
        )
    log = open(a.log, "a") if a.log else None
    sets = make_sets(work, a.seed, a.scale, a.photos)
    if a.eval_only:
        nets, router = load_fixtures(out, cfg, a.trust_checkpoint)
        table, rho, levels = evaluate(sets, nets, router, theta, cfg.p)
        print(format_table(table, rho, names))
        print(format_levels(levels))
        return 0
    nets, metas = {}, {}
    caps = dict(MINUTES)
    if a.minutes:
        caps = dict(zip(("small", "large"), a.minutes))
    for role, choice in (("small", cfg.small), ("large", cfg.large)):
        net = build_pose_net(choice.arch, choice.head)
        if role in reuse:
            metas[role] = load_trained(net, role_file(out, cfg, role), role, a.trust_checkpoint)
            nets[role] = net.eval().requires_grad_(False)
            continue
        resume = role in resumed
        if resume:
            before = load_trained(net, role_file(out, cfg, role), role, a.trust_checkpoint)
        # a resumed net sees new scenes (another stream seed) at half the peak learning rate
        plan = TrainPlan(
            steps=max(2, int(PLAN[f"{role}_steps"] * a.scale)),
            lr=1e-3 if resume else 2e-3,
            seed=1000 * (1 + (role == "large")) + a.seed + (500 if resume else 0),
            max_minutes=None if a.no_caps else caps[role] * max(a.scale, 0.05),
        )
        info = train_pose(net, plan, desc=f"{role} {choice.arch}/{choice.head}", log=log)
        metas[role] = {
            "arch": choice.arch,
            "head": choice.head,
            "config": cfg.name,
            "data": "synthetic figures (build.synth)",
            "note": "knows synthetic figures, not real people",
            **info,
        }
        if resume:
            metas[role]["resumed_from"] = {
                k: before.get(k) for k in ("steps", "minutes", "seed", "resumed_from")
            }
        save_checkpoint(net, role_file(out, cfg, role), metas[role])
        nets[role] = net.eval().requires_grad_(False)
    # router: both nets frozen, targets from D_s and D_l on the router set's detector boxes
    coco, cs = crops_of(sets["router"], nets, keep_f0=True, desc="router crops")
    target, use = with_empty_boxes(*crop_targets(cs, coco)[:2], cs.gt_index)
    held = np.isin(cs.image_ids, np.unique(cs.image_ids)[::10])
    torch.manual_seed(a.seed)
    router = build_router(**cfg.router)
    rinfo = fit_router(
        router,
        cs.f0[use & ~held],
        target[use & ~held],
        epochs=max(2, int(PLAN["router_epochs"] * min(1.0, a.scale * 4))),
        seed=a.seed,
        val=(cs.f0[use & held], target[use & held]),
        log=log,
    )
    save_checkpoint(router, role_file(out, cfg, "router"), {"config": cfg.name, "role": "router", **rinfo})
    table, rho, levels = evaluate(sets, nets, router, theta, cfg.p)
    report = {
        "seed": a.seed,
        "scale": a.scale,
        "minutes": round((time.time() - t0) / 60, 1),
        "table": table,
        "router_spearman_test": rho,
        "levels": levels,
        "train": metas,
        "router": rinfo,
    }
    atomic_write_text(report_file(out, cfg), json.dumps(report, indent=1, default=float))
    print(format_table(table, rho, names))
    print(format_levels(levels))
    print(f"fixtures written to {out} in {report['minutes']} min")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    return guarded(main, argv, prog="python -m build.train.fixtures")


if __name__ == "__main__":
    sys.exit(cli())
