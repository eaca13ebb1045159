"""A frozen copy of the per-crop ``make_crops``: the unit the preprocessing gate measures it in.

Why a copy, not a probe: like bench/decode_frozen.py for the decode, a ratio only ignores
the machine when both sides do the same kind of work. This is
``runtime.pose.preprocess.make_crops`` as it stood before issue #29 (commit 4e2e500): per
crop one ``cv2.warpAffine``, a float copy, the normalisation and a transpose into the
[N,3,256,192] float32 buffer. Same frame, same boxes, same numbers out
(``tests/test_preprocess.py`` checks the live code against it bit for bit), so on any CPU
``preprocess / frozen`` moves only when runtime/pose/preprocess.py gets slower or faster.
Do not edit it to follow the live code: it is the yardstick. Imports nothing from
``runtime`` on purpose.
"""

from __future__ import annotations

import cv2
import numpy as np

FROZEN_HW = (256, 192)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def _affines(centers: np.ndarray, scales: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    n = len(centers)
    sx = out_hw[1] / scales[:, 0]
    sy = out_hw[0] / scales[:, 1]
    m = np.zeros((n, 2, 3), np.float64)
    m[:, 0, 0] = sx
    m[:, 1, 1] = sy
    m[:, 0, 2] = out_hw[1] * 0.5 - sx * centers[:, 0]
    m[:, 1, 2] = out_hw[0] * 0.5 - sy * centers[:, 1]
    return m


def frozen_make_crops(
    image_bgr: np.ndarray, centers: np.ndarray, scales: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """The per-crop make_crops of commit 4e2e500 (256x192 only)."""
    n = len(centers)
    h, w = FROZEN_HW
    if out is None:
        out = np.empty((n, 3, h, w), np.float32)
    mats = _affines(centers, scales, FROZEN_HW)
    scale = (1.0 / _STD)[::-1].astype(np.float32)  # BGR order
    shift = (-_MEAN / _STD)[::-1].astype(np.float32)
    for i in range(n):
        crop = cv2.warpAffine(
            image_bgr, mats[i], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        norm = crop.astype(np.float32) * scale + shift
        out[i] = norm[:, :, ::-1].transpose(2, 0, 1)
    return out[:n]
