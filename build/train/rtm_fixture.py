"""``python -m build.train.rtm_fixture``: train the RTMPose-t-architecture fixture of ``fixture-rtm``.

Why: RTMPose's INT8 accuracy (the SimCC classifiers, the GAU) can only be judged on trained
weights, and released COCO weights cannot be bundled here. This trains ``rtmpose-t`` with its
SimCC head on the fixtures' synthetic figures (build.train.data, the recipe of
``build.train.fixtures``: fresh crops cut by the runtime's own preprocessing, AdamW, warm-up and
cosine, a wall-clock cap) with MMPose's KLDiscretLoss on Gaussian SimCC labels, and saves the
state dict in fp16 (3.3 M parameters: 6.7 MB, small enough to commit; loading casts it back to
fp32). The weights know synthetic figures, not real people.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from runtime.cli.args import OneLineParser, existing_file, nonneg_int, number, output_dir
from runtime.errors import guarded
from runtime.heads.registry import SIMCC

from ..checkpoint import load_strict
from ..models import build_pose_net
from .trainer import TrainPlan, train_pose

REPO = Path(__file__).resolve().parents[2]
ARCH = "rtmpose-t"
FILE = "rtmpose-t.pth"
STEPS = 4000  # planned; the wall-clock cap usually ends it first (the schedule is compressed to fit)
MINUTES = 25.0


def save_fp16(model: torch.nn.Module, path: Path, meta: dict) -> Path:
    """``{'state_dict', 'meta'}`` with floating tensors in fp16 (halves the file; BN statistics and
    weights of a trained net lose nothing a fixture needs); plain types only (``weights_only``)."""
    sd = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).clone().contiguous()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "meta": {**meta, "saved_dtype": "float16"}}, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m build.train.rtm_fixture", description=__doc__)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", default=str(REPO / "build" / "fixtures"), type=output_dir)
    p.add_argument("--minutes", type=number(float, lo=0, lo_open=True), default=MINUTES)
    p.add_argument("--steps", type=number(int, lo=2), default=STEPS)
    p.add_argument("--batch", type=number(int, lo=2), default=32, help="crops per step")
    p.add_argument("--threads", type=number(int, lo=1, hi=256), default=2, help="torch threads")
    p.add_argument(
        "--init",
        type=existing_file,
        default=None,
        help="continue from this rtmpose-t checkpoint (a fresh warm-up and cosine over --minutes; use "
        "another --seed so the figures differ): a run cut short on a busy machine goes on from where it "
        "stopped",
    )
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    net = build_pose_net(ARCH, SIMCC)
    before: dict = {}
    if a.init is not None:
        before = dict(torch.load(a.init, map_location="cpu", weights_only=True).get("meta", {}))
        load_strict(net, a.init, "--init")
    plan = TrainPlan(steps=a.steps, batch_size=a.batch, lr=2e-3, seed=3000 + a.seed, max_minutes=a.minutes)
    info = train_pose(net, plan, desc=f"{ARCH}/{SIMCC}")
    meta = {
        "arch": ARCH,
        "head": SIMCC,
        "config": "fixture-rtm",
        "data": "synthetic figures (build.synth)",
        "note": "knows synthetic figures, not real people",
        **info,
    }
    if a.init is not None:  # the whole history: what this run went on from
        meta["continued_from"] = {k: before.get(k) for k in ("steps", "minutes", "seed", "batch_size", "lr")}
        meta["total_steps"] = int(before.get("total_steps", before.get("steps", 0))) + int(info["steps"])
    path = save_fp16(net, Path(a.out) / FILE, meta)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {info['steps']} steps in {info['minutes']} min")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    return guarded(main, argv, prog="python -m build.train.rtm_fixture")


if __name__ == "__main__":
    sys.exit(cli())
