"""Object Keypoint Distance, router targets, and AP of a routing decision.

docs/DESIGN.md section 2: per keypoint d_i (here divided by the person's scale
sqrt(area), so D does not grow with the person's size; the router target is a
ratio, so this only matters for the "D_s ~ 0" cut), rho_i = 100 w_i / (2 sigma_i)^2,
D = sum d_i rho_i v_i / sum v_i over labelled keypoints.
"""

from __future__ import annotations

import numpy as np

from measure.coco_eval import evaluate_keypoints, load_gt, to_coco_results
from runtime.heads.decode import COCO_SIGMAS
from runtime.pose.routing import Band, fit_thresholds, route

OKD_WEIGHTS = np.array([1, 1, 1, 1, 1, 1.2, 1.2, 1.5, 1.5, 2, 2, 1.2, 1.2, 1.5, 1.5, 2, 2], np.float64)
RHO = 100.0 * OKD_WEIGHTS / (2.0 * COCO_SIGMAS) ** 2
D_EPS = 1e-3  # D_s below this: the small net is already right, the ratio is noise


def okd(pred_xy: np.ndarray, gt_kp: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Object Keypoint Distance per crop: [N,17,2] predictions vs [N,17,3] GT (v > 0 counts), scale sqrt(area)."""
    v = (gt_kp[..., 2] > 0).astype(np.float64)
    d = np.linalg.norm(pred_xy[..., :2] - gt_kp[..., :2], axis=-1) / np.sqrt(np.maximum(area, 1.0))[:, None]
    den = v.sum(-1)
    return np.where(den > 0, (d * RHO * v).sum(-1) / np.maximum(den, 1), 0.0)


def router_targets(
    d_small: np.ndarray, d_large: np.ndarray, eps: float = D_EPS, clip: float = -1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(D_s - D_l) / D_s and the mask of crops that count (D_s > eps).

    The ratio is at most 1; it is unbounded below (the large net can be far
    worse), so it is clipped at ``clip``: a sigmoid score cannot go under 0
    anyway, and one outlier must not dominate the squared loss.
    """
    d_small = np.asarray(d_small, np.float64)
    d_large = np.asarray(d_large, np.float64)
    valid = d_small > eps
    t = np.where(valid, (d_small - d_large) / np.where(valid, d_small, 1.0), 0.0)
    return np.clip(t, clip, 1.0).astype(np.float32), valid


def routed_results(cs, large: np.ndarray) -> list[dict]:
    """COCO results of a per-crop choice: ``large`` True takes the large net's keypoints.

    Each person is ranked by its box score alone: a heatmap head's keypoint
    scores (Gaussian peaks) and a probmap head's (expected OKS) live on
    different scales, so MMPose's "box score x mean keypoint score" would let
    the routing decision reorder people for reasons that are not accuracy.
    """
    ok = cs.gt_index != -2
    kp = np.where(large[:, None, None], cs.preds["large"], cs.preds["small"])[ok]
    return to_coco_results(cs.image_ids[ok], kp, cs.det_scores[ok])


def ap_of(gt, cs, large: np.ndarray, image_ids=None) -> float:
    """``gt``: a path or a loaded ``COCO`` (pass the object when scoring many choices on one set)."""
    return evaluate_keypoints(gt, routed_results(cs, large), image_ids=image_ids)["AP"]


def by_level(gt, cs, large: dict[str, np.ndarray], target: np.ndarray, valid: np.ndarray) -> dict[str, dict]:
    """Per synthetic scene level (the images' ``difficulty``): AP of each choice in ``large``, the mean
    router target and the mean router score; says where the large net's gain sits and whether the router sees it."""
    gt = load_gt(gt)
    images = gt.dataset["images"]
    out: dict[str, dict] = {}
    for level in sorted({im.get("difficulty", "all") for im in images}):
        ids = [im["id"] for im in images if im.get("difficulty", "all") == level]
        here = np.isin(cs.image_ids, ids)
        m = here & valid
        row = {name: ap_of(gt, cs, choice, image_ids=ids) for name, choice in large.items()}
        row.update(
            crops=int(here.sum()),
            target=float(target[m].mean()) if m.any() else float("nan"),
            router=float(cs.router[m].mean()) if cs.router is not None and m.any() else float("nan"),
            dyn_share=float(large["dyn"][here].mean()) if "dyn" in large else float("nan"),
        )
        out[level] = row
    return out


def dyn_choice(cs, calib_scores: np.ndarray, theta: float, p: float) -> tuple[Band, np.ndarray]:
    """The band fitted on ``calib_scores`` and the crops of ``cs`` it sends to the large net."""
    band = fit_thresholds(calib_scores, theta, p)
    return band, route("dyn", cs.router, band.k1, band.k2, band.large_fraction)


def policy_table(
    gt, test, calib_scores: np.ndarray, theta: float, p: float, random_seeds: int = 5
) -> dict[str, float]:
    """AP of small, large, dyn (band fitted on ``calib_scores``) and random at dyn's fraction."""
    gt = load_gt(gt)
    n = len(test)
    band, dyn = dyn_choice(test, calib_scores, theta, p)
    frac = float(dyn.mean())
    rnd = [
        ap_of(gt, test, route("random", test.router, band.k1, band.k2, frac, np.random.default_rng(s)))
        for s in range(random_seeds)
    ]
    return {
        "small": ap_of(gt, test, np.zeros(n, bool)),
        "large": ap_of(gt, test, np.ones(n, bool)),
        "dyn": ap_of(gt, test, dyn),
        "random": float(np.mean(rnd)),
        "random_std": float(np.std(rnd)),
        "large_fraction": frac,
        "k1": band.k1,
        "k2": band.k2,
        "theta": theta,
        "p": p,
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def heldout_keypoint_error(net, scenes: int = 40, seed: int = 777, max_crops: int = 96) -> dict[str, float]:
    """Did a pose net learn the figures, or only where keypoints usually are?

    On crops of ``scenes`` synthetic scenes drawn from ``seed`` (never a training stream: those
    draw from ``[seed, worker, i]`` with the plans' seeds), decoded as the runtime decodes them:
    the median distance of in-window keypoints from the truth in the net's input pixels, beside
    the same median for answering each keypoint's mean position over these crops (the mean pose,
    where a net that learnt nothing but the prior sits: the RTMPose-t runs before its head's
    MMPose initialisation read 30.5 against 31.0 px).
    """
    import torch

    from runtime.heads.grid import HEATMAP_HW

    from ..synth.coco import load_photos
    from ..synth.scene import make_scene
    from .data import scene_crops
    from .infer import decode_net, net_hw

    photos = load_photos(None)
    xs, xys, inside = [], [], []
    for i in range(scenes):
        rng = np.random.default_rng([seed, i])
        got = scene_crops(make_scene(rng, photos), rng, 0)
        if got is not None:
            xs.append(got[0])
            xys.append(got[1].xy)
            inside.append(got[1].inside)
    x = np.concatenate(xs)[:max_crops]
    ins = np.concatenate(inside)[:max_crops]
    h, w = net_hw(net)
    truth = np.concatenate(xys)[:max_crops] * np.array([w / HEATMAP_HW[1], h / HEATMAP_HW[0]])
    net.eval()
    with torch.no_grad():
        coords, _, grid = decode_net(net, net(torch.from_numpy(x)))
    pred = coords * np.array([w / grid[1], h / grid[0]])
    err = np.linalg.norm(pred - truth, axis=-1)[ins]
    prior = np.concatenate(
        [
            np.linalg.norm(truth[ins[:, k], k] - truth[ins[:, k], k].mean(0), axis=-1)
            for k in range(ins.shape[1])
            if ins[:, k].any()
        ]
    )
    return {
        "crops": float(len(x)),
        "median_px": float(np.median(err)),
        "mean_pose_px": float(np.median(prior)),
    }
