"""Presence calibration: temperature scaling of the presence logits and the Ex-OKS threshold.

The presence head says "this keypoint lies inside the activation window".
Trained nets are usually over- or under-confident, and the runtime turns
presence into in/out decisions, so we fit one temperature T (the runtime
applies ``sigmoid(logit(p) / T)``, runtime.pose.pipeline) on crops where the
answer is known: CropCOCO-style crops of ground-truth people, cut so that
some labelled keypoints fall outside the image and therefore out of the
window (people of --calib-data photos, or of synthetic scenes for configs
whose bundled weights were trained on those: calibration_domain). ECE before/after says whether it helped; the Ex-OKS threshold is the
best-accuracy one on bench.ex_oks's 0.05 grid (one definition for build and
evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.pose.preprocess import HW, INPUT_HW, CropWindows, net_input_hw

from .data import DEFAULT_CALIB, _read_image, coco_keypoints, cut_person

EPS = 1e-7
ECE_BINS = 15
T_BOUNDS = (0.05, 20.0)


@dataclass
class PresenceSet:
    crops: np.ndarray  # [N,3,H,W] at one net's input size
    inside: np.ndarray  # [N,17] bool: keypoint inside the activation window
    labelled: np.ndarray  # [N,17] bool: keypoint annotated (v > 0)
    source: str

    def __len__(self) -> int:
        return len(self.crops)


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """Same arithmetic as runtime.pose.pipeline's presence scaling (float64 inside)."""
    q = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return 1.0 / (1.0 + np.exp(-np.log(q / (1 - q)) / temperature))


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of binary probabilities: sum_b n_b/N |mean(y_b) - mean(p_b)|."""
    p = np.asarray(p, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("ECE of an empty set; presence calibration needs labelled keypoints")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / p.size * abs(y[m].mean() - p[m].mean())
    return float(total)


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """T minimising the binary NLL of sigmoid(logit(p)/T), searched on log T (bounded)."""
    from scipy.optimize import minimize_scalar

    p = np.asarray(p, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if p.size == 0 or y.min() == y.max():
        raise ValueError("temperature fit needs keypoints both inside and outside the window")
    res = minimize_scalar(
        lambda lt: _nll(apply_temperature(p, float(np.exp(lt))), y),
        bounds=tuple(np.log(T_BOUNDS)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def cropcoco_samples(
    folder: str | Path = DEFAULT_CALIB, per_annotation: int = 6, seed: int = 0, input_hw: HW = INPUT_HW
) -> PresenceSet:
    """CropCOCO-style crops at ``input_hw`` (a net's size): cut the image through each GT person,
    window from the clipped box. The cuts depend on ``seed`` only, so sets at two sizes hold the
    same people and labels.

    The activation window is the clipped box at 3:4 with padding 1.25
    (docs/DESIGN.md section 6, the same window Ex-OKS uses); a labelled keypoint is *inside*
    when it lies in that window and in the cut image.
    """
    from measure.ex_oks import activation_windows, in_window

    folder = Path(folder)
    files, anns = coco_keypoints(folder)
    rng = np.random.default_rng(seed)
    crops, inside, labelled = [], [], []
    images: dict[int, np.ndarray] = {}
    for a in anns:
        img = images.setdefault(a["image_id"], _read_image(files[a["image_id"]]))
        box = np.asarray(a["bbox"], np.float64)
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        for _ in range(per_annotation):
            cut = cut_person(img, box, rng)
            if cut is None:
                continue
            sub, clipped, (x0, y0, x1, y1) = cut
            crops.append(CropWindows(clipped).crops(sub, input_hw))
            xy = kp[:, :2] - [x0, y0]
            win = activation_windows(clipped)
            in_img = (xy[:, 0] >= 0) & (xy[:, 0] < x1 - x0) & (xy[:, 1] >= 0) & (xy[:, 1] < y1 - y0)
            inside.append(in_window(xy[None, :, 0], xy[None, :, 1], win)[0] & in_img)
            labelled.append(kp[:, 2] > 0)
    if not crops:
        raise ValueError(f"no usable person annotations with keypoints in {folder}")
    return PresenceSet(
        np.concatenate(crops),
        np.stack(inside),
        np.stack(labelled),
        f"{folder} (CropCOCO-style cuts of {len(anns)} GT people, seed {seed})",
    )


def presence_fit(p: np.ndarray, inside: np.ndarray, labelled: np.ndarray) -> dict[str, Any]:
    """Temperature, ECE before/after and the Ex-OKS threshold for one set of presence outputs."""
    from measure.ex_oks import best_threshold

    m = np.asarray(labelled, bool)
    p, y = np.asarray(p, np.float64)[m], np.asarray(inside, bool)[m]
    t = fit_temperature(p, y)
    cal = apply_temperature(p, t)
    thr = best_threshold(cal, y)
    at_bound = bool(min(abs(np.log(t / b)) for b in T_BOUNDS) < 1e-3)
    return {
        "temperature": t,
        "temperature_at_bound": at_bound,
        "ece_before": ece(p, y),
        "ece_after": ece(cal, y),
        "nll_before": _nll(p, y),
        "nll_after": _nll(cal, y),
        "threshold": thr,
        "accuracy_at_threshold": float(((cal >= thr) == y).mean()),
        "n_keypoints": int(m.sum()),
        "n_inside": int(y.sum()),
    }


def synthetic_presence_set(
    n_scenes: int | None = None, seed: int | None = None, input_hw: HW = INPUT_HW
) -> PresenceSet:
    """CropCOCO-style cuts of synthetic scenes (calib.coverage.synthetic_set, the coverage fit's
    own crops): inside = known, in the window and in the cut image; labelled = known."""
    from .coverage import FIT_SEED, N_SCENES, synthetic_set

    d = synthetic_set(
        N_SCENES if n_scenes is None else n_scenes, FIT_SEED if seed is None else seed, input_hw=input_hw
    )
    return PresenceSet(d.crops, d.valid, np.asarray(d.known, bool), d.source)


def calibrate_presence(
    out_dir: Path,
    manifest: dict,
    folder: str | Path | None = None,
    seed: int = 0,
    batch: int = 8,
    domain: str = "photos",
) -> dict[str, Any]:
    """Fit on every net with a presence output (pooled: the runtime applies one temperature),
    on photo cuts of ``folder`` or (``domain="synthetic"``) on synthetic-scene cuts."""
    from .report import run_onnx

    roles = [
        r for r, m in manifest["models"].items() if any(o["name"] == "presence" for o in m.get("outputs", []))
    ]
    if not roles:
        return {
            "temperature": 1.0,
            "threshold": 0.5,
            "fitted": False,
            "reason": "no net in this config has a presence head",
        }
    if domain not in ("photos", "synthetic"):
        raise ValueError(f"calibration domain must be 'photos' or 'synthetic', got {domain!r}")

    def at(hw: HW) -> PresenceSet:  # the same cuts at each net's size (seeded)
        if domain == "synthetic":
            return synthetic_presence_set(input_hw=hw)
        return cropcoco_samples(folder or DEFAULT_CALIB, seed=seed, input_hw=hw)

    sets: dict[HW, PresenceSet] = {}
    per_role, ps = {}, []
    for role in roles:
        hw = net_input_hw(manifest, role)
        data = sets[hw] if hw in sets else sets.setdefault(hw, at(hw))
        p = run_onnx(out_dir / manifest["models"][role]["onnx"], data.crops, ["presence"], batch)["presence"]
        per_role[role] = presence_fit(p, data.inside, data.labelled)
        ps.append(p)
    pooled = presence_fit(
        np.concatenate(ps), np.tile(data.inside, (len(roles), 1)), np.tile(data.labelled, (len(roles), 1))
    )
    return {
        **pooled,
        "fitted": True,
        "n_crops": len(data),
        "source": data.source,
        "domain": domain,
        "per_role": per_role,
    }


__all__ = [
    "PresenceSet",
    "apply_temperature",
    "calibrate_presence",
    "cropcoco_samples",
    "ece",
    "fit_temperature",
    "presence_fit",
    "synthetic_presence_set",
]
