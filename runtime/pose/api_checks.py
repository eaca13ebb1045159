"""The Python API's input checks: the image and the pipeline options, refused with the fix
before any network loads or runs (one line and exit 2 in a CLI).

Why apart from runtime.pose.pipeline: these are the API's edge (what a caller may pass), the
pipeline is the scheduling behind it; keeping them apart keeps both readable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from runtime.backends import BACKENDS
from runtime.backends.options import BackendOptionError, make_options
from runtime.errors import InputError
from runtime.pose.routing import POLICIES

if TYPE_CHECKING:
    from runtime.pose.pipeline import PipelineOptions


class ImageError(InputError, ValueError):
    """An API image that is not uint8 HxWx3 BGR (exit 2 in a CLI)."""


class OptionError(InputError, ValueError):
    """A pipeline option out of range (exit 2 in a CLI)."""


def check_image(image: object) -> np.ndarray:
    """The pipeline takes what ``cv2.imread`` returns: uint8 HxWx3 BGR. Anything else would be
    normalised as if it were, giving keypoints hundreds of pixels off, so it is refused with the fix."""
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"image must be a numpy array, got {type(image).__name__}",
            "image",
            "pass an HxWx3 BGR uint8 array as cv2.imread returns",
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4)):
        raise ImageError(
            f"image must be HxWx3 BGR, got shape {image.shape}",
            "image",
            "convert with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) or cv2.COLOR_BGRA2BGR",
        )
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageError(
            f"image must be HxWx3 BGR, got shape {image.shape}",
            "image",
            "pass an HxWx3 BGR uint8 array as cv2.imread returns",
        )
    if image.dtype != np.uint8:
        fix = {
            "f": "float images in 0..1: (img * 255).clip(0, 255).round().astype(np.uint8)",
            "u": "uint16 images: (img >> 8).astype(np.uint8)",
        }.get(image.dtype.kind, "convert to uint8 0..255")
        raise ImageError(f"image must be uint8 HxWx3 BGR, got {image.dtype}", "image", fix)
    return image


def check_options(o: PipelineOptions) -> None:
    """Ranged options, checked before any net is loaded."""
    if o.policy not in POLICIES:
        raise OptionError(f"unknown policy {o.policy!r}", "policy", f"choose one of {', '.join(POLICIES)}")
    if isinstance(o.max_boxes, bool) or not isinstance(o.max_boxes, (int, np.integer)) or o.max_boxes < 1:
        raise OptionError(
            f"max_boxes must be an integer >= 1, got {o.max_boxes!r}", "max_boxes", "pass e.g. 256"
        )
    if isinstance(o.max_batch, bool) or not isinstance(o.max_batch, (int, np.integer)) or o.max_batch < 1:
        raise OptionError(
            f"max_batch must be an integer >= 1, got {o.max_batch!r}", "max_batch", "pass e.g. 32"
        )
    if o.budget_ms is not None and not (
        isinstance(o.budget_ms, (int, float)) and np.isfinite(o.budget_ms) and o.budget_ms > 0
    ):
        raise OptionError(
            f"budget_ms must be a finite number > 0, got {o.budget_ms!r}",
            "budget_ms",
            "pass milliseconds, or None for no budget",
        )
    if o.score_thr is not None and not (isinstance(o.score_thr, (int, float)) and np.isfinite(o.score_thr)):
        raise OptionError(
            f"score_thr must be a finite number, got {o.score_thr!r}", "score_thr", "pass e.g. 0.3, or None"
        )
    if o.backend != "auto" and o.backend not in BACKENDS:
        raise OptionError(
            f"unknown backend {o.backend!r}", "backend", f"choose one of auto, {', '.join(BACKENDS)}"
        )
    if not isinstance(o.precision, str) or not o.precision:
        raise OptionError(
            f"precision must be a variant name, got {o.precision!r}",
            "precision",
            "pass e.g. 'fp32' or 'int8_cpu'",
        )
    if isinstance(o.seed, bool) or not isinstance(o.seed, (int, np.integer)) or o.seed < 0:
        raise OptionError(f"seed must be an integer >= 0, got {o.seed!r}", "seed", "pass e.g. 0")
    try:
        make_options(o.backend, o.backend_options)  # names an option this backend does not take
    except BackendOptionError as e:
        raise OptionError(e.what, e.where, e.fix) from None
    check_masses(o.credible)


def check_masses(credible: object) -> None:
    """``credible``: a sequence of masses strictly inside (0, 1) (() for none), as --credible parses them."""
    ok = isinstance(credible, (tuple, list)) and all(
        not isinstance(q, bool) and isinstance(q, (int, float, np.floating)) and 0.0 < float(q) < 1.0
        for q in credible
    )
    if not ok:
        raise OptionError(
            f"credible masses must lie strictly between 0 and 1, got {credible!r}",
            "credible",
            "pass e.g. (0.5, 0.9), or () for no regions",
        )
