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
keypoints inside the window and for known keypoints outside it, single (the
expert map, which can only answer inside the window) vs double (expert
inside, outer map outside, chosen by calibrated presence as at run time).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from runtime.decode import COCO_SIGMAS, decode_probmaps
from runtime.double_decode import merge_double

from ..models.double_head import OUTER_FACTOR, DoubleProbMapHead, outer_targets
from ..models.pose_net import TopdownPoseNet
from ..models.registry import get_spec
from .losses import probpose_loss

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "large.pth"


def build_double(state: dict | None = None) -> TopdownPoseNet:
    """fixture-l with the double head; ``state`` (a fixture-l state dict) fills everything but the outer branch."""
    spec = get_spec("fixture-l")
    net = TopdownPoseNet(spec.build_backbone(),
                         DoubleProbMapHead(spec.out_channels, deconv_out_channels=spec.probmap_deconvs,
                                           feat_hw=spec.feat_hw, aux_channels=spec.aux_channels))
    if state is not None:
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("head.outer_layers.") for k in missing):
            raise RuntimeError(f"fixture-l state does not fit the DH net: missing {missing}, unexpected {unexpected}")
    return net


def fixture_state(path: Path = FIXTURE) -> dict:
    from ..checkpoint import read_state_dict
    return read_state_dict(path)


@torch.no_grad()
def features(net: TopdownPoseNet, crops: np.ndarray, batch: int = 32) -> torch.Tensor:
    net.eval()
    return torch.cat([net.backbone(torch.from_numpy(crops[i:i + batch])) for i in range(0, len(crops), batch)])


def train_outer(net: TopdownPoseNet, feats: torch.Tensor, xy: np.ndarray, known: np.ndarray, area_hm: np.ndarray,
                minutes: float, batch: int = 16, lr: float = 3e-3, seed: int = 0, log=print) -> dict:
    """Train ``head.outer_layers`` only, for at most ``minutes`` (wall clock)."""
    torch.manual_seed(seed)
    head: DoubleProbMapHead = net.head
    net.requires_grad_(False)
    head.outer_layers.requires_grad_(True)
    opt = torch.optim.AdamW(head.outer_layers.parameters(), lr=lr, weight_decay=1e-4)
    oxy = outer_targets(torch.from_numpy(xy))
    h, w = 64, 48
    inside_outer = ((oxy[..., 0] >= -0.5) & (oxy[..., 0] < w - 0.5) & (oxy[..., 1] >= -0.5) & (oxy[..., 1] < h - 0.5))
    weight = torch.from_numpy(known) & inside_outer
    area_o = torch.from_numpy(area_hm).float() / OUTER_FACTOR ** 2
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
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1),
            "loss_last100": float(np.mean(losses[-100:])) if losses else None}


def keypoint_oks(xy_pred: np.ndarray, xy_true: np.ndarray, area_hm: np.ndarray) -> np.ndarray:
    d2 = ((xy_pred.astype(np.float64) - xy_true) ** 2).sum(-1)
    return np.exp(-d2 / (2 * np.maximum(area_hm[:, None], 1.0) * (2 * COCO_SIGMAS) ** 2))


def compare(outs: dict[str, np.ndarray], data, threshold: float, temperature: float) -> dict:
    """Mean OKS single vs double, inside the window and outside it (known true positions)."""
    from runtime.pipeline import _presence_from_outputs

    coords, scores = decode_probmaps(outs["probmaps"])
    pres = _presence_from_outputs(outs, len(coords), temperature)
    dcoords, _ = merge_double(coords, scores, outs["outer_probmaps"], pres, threshold)
    inside = data.valid
    outside = data.known & ~data.valid
    # upper bound: the in/out choice made by the truth instead of the presence head
    ocoords, _ = merge_double(coords, scores, outs["outer_probmaps"], inside.astype(np.float32), 0.5)
    res = {"presence_below_threshold": {"outside": float((pres[outside] < threshold).mean()),
                                        "inside": float((pres[inside] < threshold).mean())}}
    for name, c in (("single", coords), ("double", dcoords), ("double_oracle_choice", ocoords)):
        o = keypoint_oks(c, data.xy, data.area_hm)
        res[name] = {"in_window_oks": float(o[inside].mean()), "out_of_window_oks": float(o[outside].mean()),
                     "out_within_10px_hm": float((np.linalg.norm(c - data.xy, axis=-1)[outside] < 10).mean())}
    res["n_inside"], res["n_outside"] = int(inside.sum()), int(outside.sum())
    return res


def main(argv: list[str] | None = None) -> int:
    from calib.coverage import synthetic_set
    from calib.report import run_onnx
    from runtime.cli_args import number

    from ..export import export_onnx, parity

    p = argparse.ArgumentParser(prog="python -m build.train.double", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=number(float, lo=0.1), default=10.0, help="training wall-clock cap")
    p.add_argument("--scenes", type=number(int, lo=1), default=600, help="training scenes")
    p.add_argument("--eval-scenes", type=number(int, lo=1), default=100, help="held-out scenes")
    p.add_argument("--out", type=Path, default=Path("artifacts/fixture-l-dh"), help="folder for .pth, .onnx, report")
    p.add_argument("--threshold", type=float, default=0.6, help="presence threshold (the build's Ex-OKS one)")
    p.add_argument("--temperature", type=float, default=1.0, help="presence temperature (the build's)")
    p.add_argument("--eval-only", action="store_true", help="compare the ONNX already in --out, no training")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.eval_only:
        held = synthetic_set(a.eval_scenes, seed=1000)
        res = compare(run_onnx(a.out / "large-dh.onnx", held.crops), held, a.threshold, a.temperature)
        print(json.dumps(res, indent=2))
        return 0
    net = build_double(fixture_state())
    t = time.perf_counter()
    train = synthetic_set(a.scenes, seed=5000)
    feats = features(net, train.crops)
    print(f"{len(train)} training crops, features in {time.perf_counter() - t:.0f} s")
    info = train_outer(net, feats, train.xy, train.known, train.area_hm, a.minutes)
    del feats
    torch.save({"state_dict": net.state_dict(), "meta": {"train": info, "outer_factor": OUTER_FACTOR,
                                                         "base": "build/fixtures/large.pth"}}, a.out / "large-dh.pth")
    onnx_path = export_onnx(net, a.out / "large-dh.onnx", net.output_names)
    err = parity(net, onnx_path)
    held = synthetic_set(a.eval_scenes, seed=1000)
    outs = run_onnx(onnx_path, held.crops)
    report = {"train": info, "parity_max_abs_err": err, "compare": compare(outs, held, a.threshold, a.temperature),
              "held_out": held.source}
    (a.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
