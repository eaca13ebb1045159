"""Everything a ProbPose probability-map net says per keypoint besides "where".

The ProbMapHead exports, next to its maps, ``presence`` (is the keypoint inside
the crop window), ``visibility`` (is it visible, COCO v == 2) and ``oks`` (the
OKS its own estimate is expected to reach). The pipeline used to keep only
presence; this module turns the whole set into per-person result fields:

* ``visibility`` [K] and ``oks`` (predicted OKS) [K], as the head outputs them,
* ``present`` [K]: calibrated presence >= the manifest's Ex-OKS threshold,
* ``quality``: the mean predicted OKS over the keypoints, a per-person score to
  filter on (its Spearman with the true OKS is in docs/results/2026-12-probpose.md),
* ``regions``: per requested mass q, the q credible region of each keypoint
  (runtime.heads.credible) in image coordinates: ``area`` (px^2) and ``ellipse``
  (cx, cy, semi-major, semi-minor, angle in radians of the major axis).
  When the manifest carries a coverage calibration (``manifest["credible"]``,
  calib.coverage) the region for q is the one the calibration says covers the
  keypoint with probability q, not the one holding map mass q. An engine whose fused
  decode dropped the maps brings the regions back itself (``region_pixels`` /
  ``region_ellipses``, computed in the plugin, build/plugin_nodes.py); they are used
  when its manifest record says they were made for the masses and calibration asked for.

Kept apart from pipeline.py so the scheduler only calls :meth:`ProbFieldsDecoder.fill`
once per net and results.py only asks :class:`ProbExtras` for a person's fields.
Heatmap nets have none of this; their persons carry no such fields.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.heads.base import HeadSpec, Outputs
from runtime.heads.credible import DEFAULT_MASSES, CoverageMap, Regions, calibrated_regions, regions_to_image
from runtime.heads.decode import sparsemax
from runtime.heads.double_decode import outer_regions_to_inner, pick_regions

K = 17
REGION_PIXELS, REGION_ELLIPSES = "region_pixels", "region_ellipses"  # the fused decode's region outputs
log = logging.getLogger(__name__)


@dataclass
class ProbExtras:
    """Per-row ProbPose fields of one frame (rows = input boxes); ``has`` marks rows decoded
    by a probability-map net. Region arrays are [N,Q,K] / [N,Q,K,5], NaN where absent."""

    masses: tuple[float, ...]
    has: np.ndarray  # [N] bool
    has_regions: np.ndarray  # [N] bool: the maps reached the host (see maps_of)
    visibility: np.ndarray  # [N,K]
    oks: np.ndarray  # [N,K]
    present: np.ndarray  # [N,K] bool
    area: np.ndarray  # [N,Q,K]
    ellipse: np.ndarray  # [N,Q,K,5]

    @classmethod
    def empty(cls, n: int, masses: Sequence[float]) -> ProbExtras:
        q = len(masses)
        return cls(
            tuple(masses),
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.full((n, K), np.nan, np.float32),
            np.full((n, K), np.nan, np.float32),
            np.zeros((n, K), bool),
            np.full((n, q, K), np.nan),
            np.full((n, q, K, 5), np.nan),
        )

    @property
    def quality(self) -> np.ndarray:
        """[N]: mean predicted OKS over the keypoints (NaN for heatmap-net rows)."""
        with np.errstate(invalid="ignore"):
            return (
                np.nanmean(np.where(self.has[:, None], self.oks, np.nan), axis=1)
                if self.has.any()
                else np.full(len(self.has), np.nan)
            )

    def take(self, rows: slice | np.ndarray) -> ProbExtras:
        return ProbExtras(
            self.masses,
            self.has[rows],
            self.has_regions[rows],
            self.visibility[rows],
            self.oks[rows],
            self.present[rows],
            self.area[rows],
            self.ellipse[rows],
        )

    def put(self, rows: npt.NDArray[np.intp], src: ProbExtras) -> None:
        """Copy every row of ``src`` (one net's crops) into ``rows`` of this frame."""
        for name in ("has", "has_regions", "visibility", "oks", "present", "area", "ellipse"):
            getattr(self, name)[rows] = getattr(src, name)

    def person(self, i: int) -> dict[str, Any]:
        """JSON-ready fields of row ``i`` ({} for a heatmap-net or dropped row)."""
        if not self.has[i]:
            return {}
        out: dict[str, Any] = {
            "visibility": np.round(self.visibility[i].astype(np.float64), 4).tolist(),
            "oks": np.round(self.oks[i].astype(np.float64), 4).tolist(),
            "present": self.present[i].astype(bool).tolist(),
            "quality": round(float(np.mean(self.oks[i].astype(np.float64))), 4),
        }
        if self.has_regions[i]:
            out["regions"] = {
                f"{q:g}": {
                    "area": np.round(self.area[i, qi], 2).tolist(),
                    "ellipse": np.round(self.ellipse[i, qi], 3).tolist(),
                }
                for qi, q in enumerate(self.masses)
            }
        return out


def maps_of(outs: Outputs) -> np.ndarray | None:
    """The probability maps on the host: ``probmaps`` as exported, else sparsemax of the
    ``logits`` (an engine whose plugin consumed the maps but kept logits), else None
    (a fused-decode engine that dropped every map: no regions, the rest still works)."""
    if "probmaps" in outs:
        return outs["probmaps"]
    if "logits" in outs:
        lg = np.asarray(outs["logits"], np.float32)
        n, k, h, w = lg.shape
        return sparsemax(lg.reshape(n, k, h * w), axis=-1).reshape(n, k, h, w)
    return None


def plugin_regions(outs: Outputs, masses: Sequence[float]) -> Regions | None:
    """The fused decode's regions (``region_pixels`` [N,K,Q], ``region_ellipses`` [N,K,Q,5],
    heatmap pixels) as :class:`Regions`, or None when the engine has none for these masses."""
    if REGION_PIXELS not in outs or REGION_ELLIPSES not in outs:
        return None
    pix, ell = np.asarray(outs[REGION_PIXELS]), np.asarray(outs[REGION_ELLIPSES])
    if pix.ndim != 3 or pix.shape[2] != len(masses) or ell.shape != (*pix.shape, 5):
        return None
    return Regions(
        tuple(masses),
        np.moveaxis(pix, 2, 0).astype(np.int64),
        np.moveaxis(ell, 2, 0).astype(np.float64),
        np.full((len(masses), *pix.shape[:2]), np.nan),  # the plugin does not return the threshold
    )


def engine_region_records(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``regions`` records of the fused-decode ONNX variants the manifest's engines were built
    from (build/plugin_nodes.RegionSpec.to_json): which masses their region outputs hold."""
    out = []
    for entry in (manifest.get("models") or {}).values():
        onnx_name = (entry.get("engine") or {}).get("onnx")
        for variant in (entry.get("variants") or {}).values():
            if onnx_name and variant.get("onnx") == onnx_name and variant.get("regions"):
                out.append(variant["regions"])
    return out


def parse_masses(text: str) -> tuple[float, ...]:
    """``"0.5,0.9"`` -> (0.5, 0.9); ``"none"`` or ``""`` -> () (no regions)."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return ()
    qs = tuple(float(t) for t in text.split(","))
    if any(not 0.0 < q < 1.0 for q in qs):
        raise ValueError(f"masses must lie strictly between 0 and 1, got {text!r}")
    return qs


class ProbFieldsDecoder:
    """Built once per pipeline from the manifest: coverage calibration and Ex-OKS threshold."""

    def __init__(self, manifest: dict[str, Any], masses: Sequence[float] = DEFAULT_MASSES) -> None:
        self.masses = tuple(float(q) for q in masses)
        cred = manifest.get("credible") or {}
        self.coverage = CoverageMap.from_json(cred["coverage_map"]) if cred.get("fitted") else None
        # the map mass whose region covers the keypoint with probability q (identity if uncalibrated)
        self.nominal = tuple(self.coverage.nominal_for(q) if self.coverage else q for q in self.masses)
        self.threshold = float((manifest.get("presence") or {}).get("threshold", 0.5))
        sigma = self.coverage.sigma if self.coverage else 0.0
        records = engine_region_records(manifest)
        # the engines' own regions stand in for the maps only if made for these masses and calibration
        self.device_regions = bool(records) and all(self._matches(r, sigma) for r in records)
        if records and self.masses and not self.device_regions:
            log.warning(
                "the engines' fused decode computed credible regions for %s, not for --credible %s under "
                "this calibration: no regions from them (rebuild the engines, or ask for those masses)",
                sorted({tuple(r.get("masses", ())) for r in records}),
                ",".join(f"{q:g}" for q in self.masses),
            )

    def _matches(self, record: Mapping[str, Any], sigma: float) -> bool:
        masses, nominal = tuple(record.get("masses", ())), tuple(record.get("nominal", ()))
        return (
            len(masses) == len(self.masses) == len(nominal)
            and np.allclose(masses, self.masses, rtol=0, atol=1e-6)
            and np.allclose(nominal, self.nominal, rtol=0, atol=1e-6)
            and abs(float(record.get("sigma", 0.0)) - sigma) <= 1e-9
        )

    def new(self, n: int) -> ProbExtras:
        return ProbExtras.empty(n, self.masses)

    def fill(
        self,
        ex: ProbExtras,
        rows: np.ndarray,
        spec: HeadSpec,
        outs: Outputs,
        presence: np.ndarray,
        centers: np.ndarray,
        scales: np.ndarray,
        grid_hw: tuple[int, int] | None = None,
    ) -> None:
        """Write one net's rows; a no-op for heads without probability maps. ``grid_hw`` is the
        maps' (H, W), needed only for regions that came without the maps (the fused decode's)."""
        if not spec.probabilistic or len(rows) == 0:
            return
        n = len(rows)
        ex.has[rows] = True
        for name, dst in (("visibility", ex.visibility), ("oks", ex.oks)):
            if name in outs:
                dst[rows] = np.asarray(outs[name], np.float32).reshape(n, K)
        ex.present[rows] = np.asarray(presence) >= self.threshold
        maps = maps_of(outs) if self.masses else None
        if maps is None:
            reg = plugin_regions(outs, self.masses) if self.masses and self.device_regions else None
            if reg is not None and grid_hw is not None:
                self._put(ex, rows, regions_to_image(reg, scales, centers, grid_hw))
            return
        sigma = self.coverage.sigma if self.coverage else 0.0
        reg = calibrated_regions(maps, self.nominal, sigma)
        if "outer_probmaps" in outs:  # double heatmap: an outer-placed keypoint gets its outer map's region
            outer = outer_regions_to_inner(
                calibrated_regions(outs["outer_probmaps"], self.nominal, sigma), maps.shape[-2:]
            )
            reg = pick_regions(reg, outer, np.asarray(presence) < self.threshold)
        self._put(ex, rows, regions_to_image(reg, scales, centers, maps.shape[-2:]))

    @staticmethod
    def _put(ex: ProbExtras, rows: np.ndarray, img: dict[str, np.ndarray]) -> None:
        ex.has_regions[rows] = True
        ex.area[rows] = np.moveaxis(img["area"], 0, 1)
        ex.ellipse[rows] = np.moveaxis(img["ellipse"], 0, 1)


__all__ = [
    "REGION_ELLIPSES",
    "REGION_PIXELS",
    "ProbExtras",
    "ProbFieldsDecoder",
    "add_prob_arguments",
    "engine_region_records",
    "maps_of",
    "parse_masses",
    "plugin_regions",
]


def add_prob_arguments(p: Any, overlay: bool = False) -> None:
    """``--credible`` (and ``--draw-regions`` for CLIs that draw) on an argparse parser."""

    def masses(text: str) -> tuple[float, ...]:
        import argparse

        try:
            return parse_masses(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{e}; give masses like 0.5,0.9 or 'none'") from None

    p.add_argument(
        "--credible",
        type=masses,
        default=DEFAULT_MASSES,
        metavar="Q[,Q...]",
        help="credible-region masses reported per keypoint of probability-map nets "
        "(area px^2 + ellipse; calibrated when the manifest has a coverage map); "
        "'none' to skip (default: 0.5,0.9)",
    )
    if overlay:
        p.add_argument(
            "--draw-regions",
            action="store_true",
            help="draw each keypoint's credible region (the largest --credible mass) on the overlay",
        )
