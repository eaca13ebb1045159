"""Letterbox frames into a preallocated detector input batch.

The detector sees every frame at a fixed size (aspect kept, grey 114
padding), so the build-time calibration and the runtime must letterbox the
same way: both call :class:`Letterboxer`. The batch buffer and the uint8
canvas are allocated once per detector, so a camera-rate loop allocates
nothing per frame but OpenCV's resize output, which is written straight
into the canvas.

The geometry (``s = min(H/h, W/w)``, rounded size, padding split with the
smaller half first) is the one the first ``onnx:PATH`` detector used, whose box
AP on coco-mini the detector issue measured; keeping it keeps that number. Every
network detector (:mod:`runtime.detectors.net`) letterboxes through here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

PAD_VALUE = 114


@dataclass(frozen=True)
class Geometry:
    """How one frame was placed in the detector input: input px = image px * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float

    def to_image_xy(self, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Input-pixel x, y pairs (last axis 2) -> frame pixels."""
        out = np.asarray(xy, np.float64).copy()
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale
        return out


def geometry(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[Geometry, tuple[int, int]]:
    """Scale/padding of an image of ``image_hw`` in ``input_hw``, and its resized (h, w)."""
    h, w = image_hw
    s = min(input_hw[0] / h, input_hw[1] / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    py, px = (input_hw[0] - nh) // 2, (input_hw[1] - nw) // 2
    return Geometry(s, float(px), float(py)), (nh, nw)


class Letterboxer:
    """Fills a float32 RGB [N,3,H,W] batch in 0..1 from BGR uint8 frames, without reallocating."""

    def __init__(self, input_hw: tuple[int, int], max_batch: int = 1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.hw = (int(input_hw[0]), int(input_hw[1]))
        self.batch = np.empty((max_batch, 3, *self.hw), np.float32)
        self._canvas = np.empty((*self.hw, 3), np.uint8)

    @property
    def max_batch(self) -> int:
        return self.batch.shape[0]

    def place(self, image: npt.NDArray[np.uint8], slot: int) -> Geometry:
        """Letterbox one BGR frame into ``batch[slot]``."""
        g, (nh, nw) = geometry(image.shape[:2], self.hw)
        c = self._canvas
        c[...] = PAD_VALUE
        py, px = int(g.pad_y), int(g.pad_x)
        cv2.resize(image, (nw, nh), dst=c[py : py + nh, px : px + nw], interpolation=cv2.INTER_LINEAR)
        # BGR HWC uint8 -> RGB CHW float in one pass over the canvas
        np.multiply(
            c[:, :, ::-1].transpose(2, 0, 1), np.float32(1 / 255), out=self.batch[slot], casting="unsafe"
        )
        return g

    def fill(self, images: list[npt.NDArray[np.uint8]]) -> tuple[npt.NDArray[np.float32], list[Geometry]]:
        """Letterbox up to ``max_batch`` frames; returns the batch view [len(images),3,H,W] and geometries."""
        if not 0 < len(images) <= self.max_batch:
            raise ValueError(f"{len(images)} frames for a letterbox batch of at most {self.max_batch}")
        geos = [self.place(img, i) for i, img in enumerate(images)]
        return self.batch[: len(images)], geos
