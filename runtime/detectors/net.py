"""Network person detectors on the Backend/Runner interface: the artifacts' detector and ``onnx:PATH``.

The artifacts' detector (role ``detector``) is a network of the pipeline like
the pose nets: the same backends run it (TensorRT engine on its own CUDA
stream, ONNX Runtime on its own worker thread, or Triton), so on a Jetson the
frame never leaves the GPU stack for detection. Its manifest entry
(``models.detector``, written by ``build.detector``) gives the input size, the
YOLO layout, the class and the default thresholds (``score``, ``iou`` and, where the
build knew one, ``track``: the score that starts a track, see :attr:`NetDetector.track_thr`);
nothing is guessed at run time.

A user's YOLO ONNX (``onnx:PATH``) runs through the same class on an ONNX
Runtime runner (CPU); what the manifest would say is read from the model: the
input size (640 where dynamic), the layout (the exporter's metadata, the output
shape, or ``--det-layout``; :func:`runtime.detectors.yolo.model_layout`).
Both use the one letterbox (:mod:`runtime.detectors.letterbox`) and the one
decode + NMS (:func:`runtime.detectors.yolo.decode`).

``submit``/``collect`` split a call so a caller can letterbox and enqueue
frame t+1 while it still works on frame t; two letterbox buffers alternate,
and a buffer is refilled only after the work that reads it was collected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.artifacts.manifest import ManifestError, load_manifest
from runtime.backends import open_backend
from runtime.backends.base import Backend, BackendError, Pending, Runner, Stream
from runtime.backends.options import PROVIDERS, BackendOptions
from runtime.backends.ort import OrtRunner, OrtStream
from runtime.detectors.base import Detections, DetectorError
from runtime.detectors.letterbox import Geometry, Letterboxer
from runtime.detectors.yolo import LayoutError, OutputCheck, YoloLayout, decode, model_layout, parse_metadata
from runtime.io.sources import Frame

ROLE = "detector"
ONNX_INPUT = 640  # input side of an ``onnx:PATH`` model whose size is dynamic
ONNX_SCORE, ONNX_IOU = 0.35, 0.5  # ``onnx:PATH`` defaults (the manifest has its own)


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


@dataclass(frozen=True)
class Decoding:
    """How a detector's output becomes boxes: its layout and thresholds (``max_det`` 0: no cap);
    ``swapped``: the output holds the layout's two last axes the other way round."""

    layout: YoloLayout
    cls: int
    score_thr: float
    iou_thr: float
    max_det: int = 0
    swapped: bool = False


class NetDetector:
    """Frames -> :class:`~runtime.detectors.base.Detections` with a YOLO network on a runner.

    ``NetDetector(root, ...)`` opens the artifacts' detector; :meth:`from_onnx` a bare ONNX file.
    ``track_thr``: the score from which a box may start a track (the manifest's ``thresholds.track``;
    None: the tracker's own). Why the detector says it: scores differ in kind between detectors (an
    RTMDet's are IoU-aware and run lower than a YOLO's class confidence), so one constant in the
    tracker cannot fit both."""

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
        backend_options: BackendOptions | Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.manifest = dict(manifest) if manifest is not None else load_manifest(self.root)
        if not has_detector(self.manifest):
            raise ManifestError(
                f"{self.root} has no detector; add one at build time with "
                "`python -m build.engines --detector rtmdet-nano-person (or PATH.onnx) ...`"
            )
        entry = self.manifest["models"][ROLE]
        thr = entry.get("thresholds", {})
        self.variant = detector_variant(entry, precision)
        self.backend: Backend[Any] | None = open_backend(
            backend, self.root, self.manifest, backend_options, precision=self.variant
        )
        self._start(
            f"engine ({self.root}, {self.variant} on {backend})",
            self.backend.open_runner(ROLE).activate(),
            self.backend.new_stream(ROLE),
            (int(entry["input_hw"][0]), int(entry["input_hw"][1])),
            max_batch,
        )
        self.decoding = Decoding(
            YoloLayout.from_dict(entry["layout"]),
            int(entry.get("class", 0) if cls is None else cls),
            float(thr.get("score", 0.3) if score_thr is None else score_thr),
            float(thr.get("iou", 0.7) if iou_thr is None else iou_thr),
            int(thr.get("max_det", 300)),
        )
        self.track_thr: float | None = float(thr["track"]) if "track" in thr else None

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        layout: str = "auto",
        det_class: int = 0,
        score_thr: float | None = None,
        iou_thr: float | None = None,
        threads: int | None = None,
    ) -> NetDetector:
        """A user's YOLO ONNX (``onnx:PATH``) on an ONNX Runtime runner (module docstring), with
        ``threads`` per session (the run's ``--threads``; None: every core)."""
        path = Path(path)
        if not path.is_file():
            raise DetectorError(f"ONNX detector {path} not found (--detector onnx:PATH)")
        det = cls.__new__(cls)
        det.root, det.manifest, det.backend, det.variant = path.parent, {}, None, "fp32"
        det.track_thr = None
        runner = OrtRunner(ROLE, {}, path.parent, path, PROVIDERS["cpu"], threads or os.cpu_count() or 1)
        try:
            runner.activate()
        except BackendError as e:
            raise DetectorError(f"ONNX Runtime cannot load the detector {path}: {e.__cause__ or e}") from e
        try:
            hw, meta, shape = _read_onnx(runner, path)
        except DetectorError:
            runner.deactivate()
            raise
        det._start(f"onnx:{path}", runner, OrtStream(ROLE), hw, 1)
        try:
            yolo, swapped = _onnx_layout(det, layout, meta, shape)
            if not 0 <= det_class < yolo.num_classes:
                raise LayoutError(f"class {det_class} is out of range for {yolo.num_classes} classes")
        except DetectorError as e:
            det.close()
            if isinstance(e, LayoutError):
                raise DetectorError(f"onnx:{path}: {e} (--det-layout, --det-class)") from e
            raise
        det.decoding = Decoding(
            yolo,
            det_class,
            ONNX_SCORE if score_thr is None else score_thr,
            ONNX_IOU if iou_thr is None else iou_thr,
            swapped=swapped,
        )
        return det

    def _start(self, name: str, runner: Runner, stream: Stream, hw: tuple[int, int], max_batch: int) -> None:
        self.name, self.runner, self.stream = name, runner, stream
        self.max_batch = max(1, min(max_batch, runner.max_batch or max_batch))
        self._boxers = [Letterboxer(hw, self.max_batch) for _ in range(2)]
        self._busy: list[_Job | None] = [None, None]
        self._next = 0
        self.output = runner.output_names[0]
        self.check = OutputCheck(name)
        self._closed = False

    @property
    def input_hw(self) -> tuple[int, int]:
        return self._boxers[0].hw

    # -- what callers read: the decoding's parts ---------------------------------------
    @property
    def layout(self) -> YoloLayout:
        return self.decoding.layout

    @property
    def score_thr(self) -> float:
        return self.decoding.score_thr

    @property
    def iou_thr(self) -> float:
        return self.decoding.iou_thr

    @property
    def cls(self) -> int:
        return self.decoding.cls

    @property
    def shares_cameras(self) -> bool:
        """One detector for every camera, their frames in one batch (the artifacts' batched
        profile); an ``onnx:PATH`` model is opened once per camera instead."""
        return self.backend is not None

    def submit(self, images: list[npt.NDArray[np.uint8]]) -> _Job:
        """Letterbox up to ``max_batch`` BGR frames and enqueue them on the detector's stream."""
        b = self._next
        self._next = 1 - b
        busy = self._busy[b]
        if busy is not None:  # its buffer may still be read by queued work
            busy.pending.wait()
        batch, geos = self._boxers[b].fill(images)
        job = _Job(self.runner.infer_async(batch, self.stream), geos, b)
        self._busy[b] = job
        return job

    def collect(self, job: _Job) -> list[Detections]:
        out = job.pending.wait()[self.output]
        if self._busy[job.buf] is job:
            self._busy[job.buf] = None
        d = self.decoding
        if d.swapped:
            out = out.transpose(0, 2, 1)
        return self.check(decode(out, d.layout, job.geos, d.score_thr, d.iou_thr, d.cls, d.max_det))

    def detect_many(self, images: list[npt.NDArray[np.uint8]]) -> list[Detections]:
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

    def __call__(self, frame: Frame | npt.NDArray[np.uint8]) -> Detections:
        image = frame.image if isinstance(frame, Frame) else frame
        return self.collect(self.submit([image]))[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for j in self._busy:
            if j is not None:
                j.pending.wait()
        self.runner.deactivate()
        self.stream.close()
        if self.backend is not None:
            self.backend.close()


def _read_onnx(runner: OrtRunner, path: Path) -> tuple[tuple[int, int], dict[str, Any], list[Any]]:
    """An ``onnx:PATH`` model's input size (a dynamic side is :data:`ONNX_INPUT`), its exporter
    metadata and its first output's (possibly symbolic) shape."""
    sess = runner.session
    if sess is None:
        raise DetectorError(f"ONNX Runtime did not open the detector {path}")
    inp = sess.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise DetectorError(f"detector {path} input {inp.name} has shape {shape}; expected [1,3,H,W]")
    hw = tuple(d if isinstance(d, int) and d > 0 else ONNX_INPUT for d in shape[2:])
    meta = parse_metadata(sess.get_modelmeta().custom_metadata_map)
    return (hw[0], hw[1]), meta, list(sess.get_outputs()[0].shape)


def _onnx_layout(
    det: NetDetector, flag: str, meta: Mapping[str, Any], shape: list[Any]
) -> tuple[YoloLayout, bool]:
    """The layout from the model's metadata and output shape; a dynamic shape the metadata does not
    settle is read from one run on a blank frame."""
    try:
        return model_layout(flag, meta, shape)
    except LayoutError:
        if all(isinstance(d, int) for d in shape):
            raise
    blank = np.full((*det.input_hw, 3), 114, np.uint8)
    out = det.runner.infer(det._boxers[0].fill([blank])[0], det.stream)[det.output]
    return model_layout(flag, meta, list(out.shape))


def attach_det_keypoints(
    record: dict[str, Any], keypoints: npt.NDArray[np.floating[Any]] | None
) -> dict[str, Any]:
    """Put a pose detector's own keypoints [M,K,3] beside the top-down ones (same box order)."""
    if keypoints is None:
        return record
    for p, kp in zip(record["persons"], keypoints):
        p["det_keypoints"] = [[round(float(v), 2) for v in row] for row in kp]
    return record
