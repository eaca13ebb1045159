"""The artifacts' person detector (role ``detector``) run through the Backend/Runner interface.

The detector is a network of the pipeline like the pose nets: the same
backends run it (TensorRT engine on its own CUDA stream, or ONNX Runtime on
its own worker thread), so on a Jetson the frame never leaves the GPU
stack for detection. The manifest entry (``models.detector``, written by
``build.detector``) gives the input size, the YOLO layout, the class and the
default thresholds; nothing is guessed at run time.

``submit``/``collect`` split a call so a caller can letterbox and enqueue
frame t+1 while it still works on frame t; two letterbox buffers alternate,
and a buffer is refilled only after the work that reads it was collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifacts.manifest import ManifestError, load_manifest
from runtime.backends import open_backend
from runtime.backends.base import Backend, Pending
from runtime.detectors.letterbox import Geometry, Letterboxer
from runtime.detectors.yolo import Detections, OutputCheck, YoloLayout, decode
from runtime.io.sources import Frame

ROLE = "detector"


def has_detector(manifest: Mapping[str, Any]) -> bool:
    return ROLE in manifest.get("models", {})


def detector_variant(entry: Mapping[str, Any], precision: str) -> str:
    """The detector variant for a pipeline precision: the same one when built, else fp32."""
    return precision if precision in (entry.get("variants") or {}) else "fp32"


@dataclass
class _Job:
    pending: Pending
    geos: list[Geometry]
    buf: int


class NetDetector:
    """Frames -> :class:`~runtime.detectors.yolo.Detections` with the artifacts' detector."""

    def __init__(
        self,
        root: str | Path,
        manifest: Mapping[str, Any] | None = None,
        backend: str = "auto",
        precision: str = "fp32",
        score_thr: float | None = None,
        iou_thr: float | None = None,
        cls: int | None = None,
        max_batch: int = 1,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.manifest = dict(manifest) if manifest is not None else load_manifest(self.root)
        if not has_detector(self.manifest):
            raise ManifestError(
                f"{self.root} has no detector; add one at build time with "
                "`python -m build.engines --detector PATH.onnx ...`"
            )
        entry = self.manifest["models"][ROLE]
        self.entry = entry
        self.layout = YoloLayout.from_dict(entry["layout"])
        thr = entry.get("thresholds", {})
        self.score_thr = float(thr.get("score", 0.3) if score_thr is None else score_thr)
        self.iou_thr = float(thr.get("iou", 0.7) if iou_thr is None else iou_thr)
        self.max_det = int(thr.get("max_det", 300))
        self.cls = int(entry.get("class", 0) if cls is None else cls)
        self.variant = detector_variant(entry, precision)
        self.backend: Backend[Any] = open_backend(
            backend, self.root, self.manifest, backend_options, precision=self.variant
        )
        self.runner = self.backend.open_runner(ROLE).activate()
        self.stream = self.backend.new_stream(ROLE)
        cap = self.runner.max_batch or max_batch
        self.max_batch = max(1, min(max_batch, cap))
        hw = tuple(entry["input_hw"])
        self._boxers = [Letterboxer(hw, self.max_batch) for _ in range(2)]
        self._busy: list[_Job | None] = [None, None]
        self._next = 0
        self.output = self.runner.output_names[0]
        self.check = OutputCheck(f"engine ({self.root}, {self.variant} on {backend})")

    def submit(self, images: list[np.ndarray]) -> _Job:
        """Letterbox up to ``max_batch`` BGR frames and enqueue them on the detector's stream."""
        b = self._next
        self._next = 1 - b
        if self._busy[b] is not None:  # its buffer may still be read by queued work
            self._busy[b].pending.wait()
        batch, geos = self._boxers[b].fill(images)
        job = _Job(self.runner.infer_async(batch, self.stream), geos, b)
        self._busy[b] = job
        return job

    def collect(self, job: _Job) -> list[Detections]:
        out = job.pending.wait()[self.output]
        if self._busy[job.buf] is job:
            self._busy[job.buf] = None
        return self.check(
            decode(out, self.layout, job.geos, self.score_thr, self.iou_thr, self.cls, self.max_det)
        )

    def detect_many(self, images: list[np.ndarray]) -> list[Detections]:
        """Any number of frames, in chunks of ``max_batch``, the next chunk queued before decoding."""
        res: list[Detections] = []
        jobs = []
        for i in range(0, len(images), self.max_batch):
            jobs.append(self.submit(images[i : i + self.max_batch]))
            if len(jobs) == 2:
                res += self.collect(jobs.pop(0))
        for j in jobs:
            res += self.collect(j)
        return res

    def __call__(self, frame: Frame | np.ndarray) -> Detections:
        image = frame.image if isinstance(frame, Frame) else frame
        return self.collect(self.submit([image]))[0]

    def close(self) -> None:
        for j in self._busy:
            if j is not None:
                j.pending.wait()
        self.runner.deactivate()
        self.stream.close()
        self.backend.close()


def attach_det_keypoints(record: dict[str, Any], keypoints: np.ndarray | None) -> dict[str, Any]:
    """Put a pose detector's own keypoints [M,K,3] beside the top-down ones (same box order)."""
    if keypoints is None:
        return record
    for p, kp in zip(record["persons"], keypoints):
        p["det_keypoints"] = [[round(float(v), 2) for v in row] for row in kp]
    return record


def open_detector(
    spec: str,
    engines: str | Path,
    *,
    backend: str = "auto",
    precision: str = "fp32",
    score_thr: float | None = None,
    iou_thr: float | None = None,
    backend_options: Mapping[str, Any] | None = None,
    **legacy: Any,
) -> Any:
    """``auto`` (the artifacts' detector when there is one, else HOG) | ``engine`` | the
    ``runtime.detectors.factory`` specs (hog, onnx:PATH, json:PATH). ``backend_options`` (e.g. the
    Triton ``url``) go to the artifacts' detector's backend, the same as the pose nets'."""
    from runtime.detectors.factory import make_detector

    if spec in ("auto", "engine"):
        manifest = load_manifest(engines)
        if has_detector(manifest):
            return NetDetector(
                engines,
                manifest,
                backend=backend,
                precision=precision,
                score_thr=score_thr,
                iou_thr=iou_thr,
                backend_options=backend_options,
            )
        if spec == "engine":
            raise ManifestError(
                f"--detector engine: {engines} has no detector; add one with "
                "`python -m build.engines --detector PATH.onnx ...` or use --detector hog"
            )
        spec = "hog"
    return make_detector(spec, score_thr=score_thr, iou_thr=0.5 if iou_thr is None else iou_thr, **legacy)
