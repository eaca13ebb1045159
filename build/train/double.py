"""``python -m build.train.double``: the double-heatmap (DH) version of ``fixture-l``, trained, compared, exported.

The expert part (backbone, deconvs, expert map, presence/visibility/OKS heads)
is the trained ``fixture-l`` fixture, frozen: in-window results of the single
and the double head are then the same network's, and the comparison isolates
what the outer map adds. Only the outer branch (build/models/double_head.py)
trains, on CropCOCO-style cuts of synthetic scenes (calib.coverage.cut_crops:
people cut by the image border, so keypoints leave the crop with known true
positions) with the ProbPose loss (build.train.losses.probpose_loss) on the
outer map. Backbone features are computed once (frozen), so training costs
only the small branch: minutes on two cores.

Comparison (held-out scenes): per keypoint OKS of the reported position for
keypoints inside the window and for known keypoints outside it, and Ex-OKS AP
/ plain AP (measure.dh_table), single (the expert map, which can only answer
inside the window) vs double (expert inside, outer map outside, chosen by
calibrated presence as at run time). The presence temperature and Ex-OKS
threshold are by default fitted as the build fits them for the fixture
configs (calib.presence.synthetic_presence_set: seed-0 synthetic cuts), or
given with --temperature/--threshold.

``--fixture`` trains into (or, when it is there and fits the current
fixture-l, reuses) build/fixtures/large-dh-outer.pth: the outer branch only,
which ``--config fixture-dyn-dh`` merges with build/fixtures/large.pth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from runtime.heads.decode import COCO_SIGMAS, decode_probmaps
from runtime.heads.double_decode import merge_double
from runtime.heads.registry import PROBMAP_DH

from ..models.double_head import OUTER_FACTOR, DoubleProbMapHead, outer_targets
from ..models.pose_net import TopdownPoseNet
from ..models.registry import build_pose_net
from .losses import probpose_loss

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "large.pth"
OUTER_FIXTURE = FIXTURE.with_name("large-dh-outer.pth")
OUTER_PREFIX = "head.outer_layers."


def build_double(state: dict | None = None) -> TopdownPoseNet:
    """fixture-l with the double head; ``state`` (a fixture-l state dict) fills everything but the outer branch."""
    net = build_pose_net("fixture-l", PROBMAP_DH)
    if state is not None:
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(OUTER_PREFIX) for k in missing):
            raise RuntimeError(
                f"fixture-l state does not fit the DH net: missing {missing}, unexpected {unexpected}"
            )
    return net


def fixture_state(path: Path = FIXTURE) -> dict:
    from ..checkpoint import read_state_dict

    return read_state_dict(path)


@torch.no_grad()
def features(net: TopdownPoseNet, crops: np.ndarray, batch: int = 32) -> torch.Tensor:
    net.eval()
    return torch.cat(
        [net.backbone(torch.from_numpy(crops[i : i + batch])) for i in range(0, len(crops), batch)]
    )


def train_outer(
    net: TopdownPoseNet,
    feats: torch.Tensor,
    xy: np.ndarray,
    known: np.ndarray,
    area_hm: np.ndarray,
    minutes: float,
    batch: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    log=print,
) -> dict:
    """Train ``head.outer_layers`` only, for at most ``minutes`` (wall clock)."""
    torch.manual_seed(seed)
    head: DoubleProbMapHead = net.head
    net.requires_grad_(False)
    head.outer_layers.requires_grad_(True)
    opt = torch.optim.AdamW(head.outer_layers.parameters(), lr=lr, weight_decay=1e-4)
    oxy = outer_targets(torch.from_numpy(xy))
    h, w = 64, 48
    inside_outer = (
        (oxy[..., 0] >= -0.5) & (oxy[..., 0] < w - 0.5) & (oxy[..., 1] >= -0.5) & (oxy[..., 1] < h - 0.5)
    )
    weight = torch.from_numpy(known) & inside_outer
    area_o = torch.from_numpy(area_hm).float() / OUTER_FACTOR**2
    rng = np.random.default_rng(seed)
    t0, steps, losses = time.perf_counter(), 0, []
    net.eval()
    head.outer_layers.train()
    while time.perf_counter() - t0 < minutes * 60:
        idx = torch.from_numpy(rng.choice(len(feats), size=min(batch, len(feats)), replace=False))
        lg = head.outer_logits(feats[idx])
        n, k, hh, ww = lg.shape
        from ..models.heads import sparsemax

        p = sparsemax(lg.reshape(n, k, hh * ww), dim=-1).reshape(n, k, hh, ww)
        loss = probpose_loss(p, oxy[idx].float(), area_o[idx], weight[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        steps += 1
        if steps % 100 == 0:
            log(f"step {steps}: loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t0:.0f} s)")
    net.eval()
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "loss_last100": float(np.mean(losses[-100:])) if losses else None,
    }


def keypoint_oks(xy_pred: np.ndarray, xy_true: np.ndarray, area_hm: np.ndarray) -> np.ndarray:
    d2 = ((xy_pred.astype(np.float64) - xy_true) ** 2).sum(-1)
    return np.exp(-d2 / (2 * np.maximum(area_hm[:, None], 1.0) * (2 * COCO_SIGMAS) ** 2))


def compare(outs: dict[str, np.ndarray], data, threshold: float, temperature: float) -> dict:
    """Single vs double on held-out crops: mean OKS inside / outside the window (known true
    positions), and the Ex-OKS AP / plain AP table (measure.dh_table)."""
    from measure.dh_table import dh_table
    from runtime.heads.base import scaled_presence

    coords, scores = decode_probmaps(outs["probmaps"])
    pres = scaled_presence(outs, len(coords), temperature)
    dcoords, _ = merge_double(coords, scores, outs["outer_probmaps"], pres, threshold)
    inside = data.valid
    outside = data.known & ~data.valid
    # upper bound: the in/out choice made by the truth instead of the presence head
    ocoords, _ = merge_double(coords, scores, outs["outer_probmaps"], inside.astype(np.float32), 0.5)
    res = {
        "threshold": threshold,
        "temperature": temperature,
        "presence_below_threshold": {
            "outside": float((pres[outside] < threshold).mean()),
            "inside": float((pres[inside] < threshold).mean()),
        },
    }
    for name, c in (("single", coords), ("double", dcoords), ("double_oracle_choice", ocoords)):
        o = keypoint_oks(c, data.xy, data.area_hm)
        res[name] = {
            "in_window_oks": float(o[inside].mean()),
            "out_of_window_oks": float(o[outside].mean()),
            "out_within_10px_hm": float((np.linalg.norm(c - data.xy, axis=-1)[outside] < 10).mean()),
        }
    res["n_inside"], res["n_outside"] = int(inside.sum()), int(outside.sum())
    res["ap"] = dh_table(
        coords,
        dcoords,
        ocoords,
        pres,
        outs["oks"].mean(1),
        data.xy,
        data.known,
        data.valid,
        data.area_hm,
        threshold,
        OUTER_FACTOR,
    )
    return res


def synthetic_presence(onnx_path: Path) -> tuple[float, float, dict]:
    """(temperature, threshold, fit) as the build fits them for a fixture config (synthetic cuts)."""
    from calib.presence import presence_fit, synthetic_presence_set
    from calib.report import run_onnx

    d = synthetic_presence_set()
    fit = presence_fit(run_onnx(onnx_path, d.crops, ["presence"])["presence"], d.inside, d.labelled)
    return fit["temperature"], fit["threshold"], {**fit, "source": d.source}


def save_outer(net: TopdownPoseNet, path: Path, meta: dict) -> Path:
    """Only the outer branch (the rest is fixture-l's, frozen), with the base file's sha256."""
    from runtime.artifacts.manifest import sha256_file

    outer = {k: v for k, v in net.state_dict().items() if k.startswith(OUTER_PREFIX)}
    torch.save(
        {
            "state_dict": outer,
            "meta": {
                **meta,
                "outer_factor": OUTER_FACTOR,
                "base": "build/fixtures/large.pth",
                "base_sha256": sha256_file(FIXTURE),
            },
        },
        path,
    )
    return path


def cached_outer(path: Path = OUTER_FIXTURE) -> TopdownPoseNet | None:
    """The fixture DH net from ``path`` when it was trained on the current fixture-l, else None."""
    from runtime.artifacts.manifest import sha256_file

    if not path.is_file():
        return None
    meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
    if meta.get("base_sha256") != sha256_file(FIXTURE):
        return None
    net = build_double()
    from ..checkpoint import load_strict

    load_strict(net, [FIXTURE, path], "large", flag="--fixture")
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import guarded

    return guarded(_main, argv, prog="python -m build.train.double")


def _main(argv: list[str]) -> int:
    from calib.coverage import synthetic_set
    from calib.report import run_onnx
    from runtime.cli.args import OneLineParser, number, output_dir, positive_float, unit_float
    from runtime.errors import InputError

    from ..export import export_onnx, parity

    p = OneLineParser(
        prog="python -m build.train.double",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=number(float, lo=0.1), default=10.0, help="training wall-clock cap")
    p.add_argument("--scenes", type=number(int, lo=1), default=600, help="training scenes")
    p.add_argument("--eval-scenes", type=number(int, lo=1), default=100, help="held-out scenes")
    p.add_argument(
        "--out",
        type=output_dir,
        default=Path("artifacts/fixture-l-dh"),
        help="folder for .pth, .onnx, report",
    )
    p.add_argument(
        "--fixture",
        action="store_true",
        help=f"train into {OUTER_FIXTURE.relative_to(FIXTURE.parents[2])} (reused when it fits the "
        "current fixture-l; --retrain forces training)",
    )
    p.add_argument(
        "--retrain", action="store_true", help="with --fixture: train even when the cached file fits"
    )
    p.add_argument(
        "--threshold",
        type=unit_float,
        default=None,
        help="presence threshold (default: fitted on synthetic cuts, as the fixture build does)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="presence temperature (default: fitted, ditto)",
    )
    p.add_argument("--eval-only", action="store_true", help="compare the ONNX already in --out, no training")
    a = p.parse_args(argv)
    onnx_path, report = a.out / "large-dh.onnx", {}
    if a.eval_only and not a.fixture and not onnx_path.is_file():  # --fixture exports the cached net
        raise InputError(
            f"no {onnx_path.name} to compare",
            f"--eval-only --out {a.out}",
            "train it first (drop --eval-only) or point --out at a folder this command wrote",
        )
    a.out.mkdir(parents=True, exist_ok=True)
    net = cached_outer() if a.fixture and not a.retrain else None
    if net is not None:
        print(f"reusing {OUTER_FIXTURE} (trained on the current fixture-l)")
    elif not a.eval_only:
        net = build_double(fixture_state())
        t = time.perf_counter()
        train = synthetic_set(a.scenes, seed=5000)
        feats = features(net, train.crops)
        print(f"{len(train)} training crops, features in {time.perf_counter() - t:.0f} s")
        info = train_outer(net, feats, train.xy, train.known, train.area_hm, a.minutes)
        del feats
        meta = {
            "train": info,
            "command": f"python -m build.train.double --minutes {a.minutes:g} --scenes {a.scenes}",
        }
        torch.save(
            {
                "state_dict": net.state_dict(),
                "meta": {**meta, "outer_factor": OUTER_FACTOR, "base": "build/fixtures/large.pth"},
            },
            a.out / "large-dh.pth",
        )
        if a.fixture:
            print(f"wrote {save_outer(net, OUTER_FIXTURE, meta)}")
        report["train"] = info
    if net is not None:
        export_onnx(net, onnx_path, net.output_names)
        report["parity_max_abs_err"] = parity(net, onnx_path)
    temperature, threshold = a.temperature, a.threshold
    if temperature is None or threshold is None:
        t_fit, thr_fit, report["presence_fit"] = synthetic_presence(onnx_path)
        temperature = t_fit if temperature is None else temperature
        threshold = thr_fit if threshold is None else threshold
    held = synthetic_set(a.eval_scenes, seed=1000)
    report["compare"] = compare(run_onnx(onnx_path, held.crops), held, threshold, temperature)
    report["held_out"] = held.source
    from measure.dh_table import format_table

    (a.out / ("report.eval.json" if a.eval_only else "report.json")).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(format_table(report["compare"]["ap"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
