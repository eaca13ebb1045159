"""``python -m runtime.images``: a folder of images + detections (or a detector) -> COCO results JSON.

Every detection yields one record, grouped by image (file-name order) and in
the detections file's order within an image (``det_index`` is its position in
that file). A box that hygiene removes keeps its record with
``"dropped": "<reason>"`` and no ``keypoints``. The output is a JSON list that
is valid after every image and grows by appends (linear I/O, see
runtime.io.json_array), so an interrupted run keeps every finished image; it is
truncated at the start, so it is never a stale file from an earlier run.
"""

from __future__ import annotations

import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm  # type: ignore[import-untyped]

from runtime.cli import expected as expected_errors  # noqa: F401 (registers the runtime's error classes)
from runtime.cli.args import (
    OneLineParser,
    backend_options,
    existing_dir,
    existing_file,
    host_port,
    nonneg_float,
    number,
    out_file_in,
    positive_int,
    run_precision,
)
from runtime.detectors.factory import DetectorOptions, detector_options_from
from runtime.errors import guarded
from runtime.heads.probfields import add_prob_arguments
from runtime.io.json_array import JsonArrayWriter
from runtime.io.records import Detection, RecordError, image_names, read_detections
from runtime.io.safe_io import drop_earlier_outputs, set_aside_earlier
from runtime.io.sources import Frame
from runtime.outcome import started_run
from runtime.pose.account import RunAccount
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.preprocess import DEFAULT_MAX_BOXES
from runtime.pose.routing import POLICIES


def load_detections(path: Path, images_dir: Path) -> tuple[dict[str, tuple[int, list[Detection]]], int]:
    """file name -> (image id, its detections in file order); plus non-person records skipped."""
    dets, other = read_detections(path, "--dets")
    names = image_names(images_dir)
    per: dict[str, tuple[int, list[Detection]]] = {}
    for d in dets:
        name = names.get(d.key)
        if name is None:
            raise RecordError(
                f"image_id {d.key} has no image in {images_dir}",
                f"--dets {path} record {d.index}",
                "pass the --images folder these detections belong to",
            )
        per.setdefault(name, (d.key, []))[1].append(d)
    return dict(per), other


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m runtime.images", description=__doc__)
    p.add_argument("--engines", required=True, type=existing_dir, help="artifacts folder with manifest.json")
    p.add_argument("--images", required=True, type=existing_dir, help="folder of images")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dets", type=existing_file, help="person detections, COCO results JSON")
    src.add_argument(
        "--detector",
        help="make the boxes here: engine (the artifacts' detector), onnx:PATH or hog; "
        "a pose detector's own keypoints go into each record as det_keypoints",
    )
    p.add_argument(
        "--out",
        default=".",
        type=out_file_in("results.json", ".json"),
        metavar="DIR",
        help="folder for results.json (COCO keypoint results; default: the current folder)",
    )
    p.add_argument("--policy", default="dyn", choices=POLICIES)
    p.add_argument("--backend", default="auto", choices=("auto", "ort", "trt", "triton"))
    p.add_argument(
        "--triton-url",
        type=host_port,
        default=None,
        help="gRPC HOST:PORT of the Triton server (implies --backend triton; refused with ort/trt)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        type=run_precision,
        help="fp32, fp16 or int8 as at build time (int8 = int8_cpu), or a variant name; ORT backend",
    )
    p.add_argument(
        "--budget-ms",
        type=number(float, lo=0, lo_open=True),
        default=None,
        help="per-frame latency budget (caps large-net crops)",
    )
    p.add_argument("--score-thr", type=nonneg_float, default=None, help="drop boxes scoring below this")
    p.add_argument(
        "--max-boxes",
        type=positive_int,
        default=DEFAULT_MAX_BOXES,
        help="most boxes posed per image (highest scores kept; the rest say dropped: over_max_boxes)",
    )
    add_prob_arguments(p)
    return p


def with_det_keypoints(records: list[dict[str, Any]], det_keypoints: Any) -> list[dict[str, Any]]:
    """A pose detector's own keypoints (flat x, y, conf) on each posed record, by its det_index."""
    if det_keypoints is not None:
        import numpy as np

        for rec in records:
            if "keypoints" in rec:
                rec["det_keypoints"] = (
                    np.round(np.asarray(det_keypoints[rec["det_index"]], np.float64), 3).reshape(-1).tolist()
                )
    return records


@dataclass(frozen=True)
class ImagesOptions:
    """Everything an images run needs, validated at the CLI edge (the namespace stops there)."""

    engines: Path
    images: Path
    out: Path  # the results JSON file
    pipeline: PipelineOptions
    dets: Path | None = None  # boxes from a file, or
    detector: DetectorOptions | None = None  # made here by this detector


def images_options(argv: list[str] | None) -> ImagesOptions:
    """Parse and validate the flags (exit 2 on a bad one, before any work)."""
    a = build_parser().parse_args(argv)
    bopts = backend_options(a)  # --triton-url implies --backend triton (refused with ort/trt)
    pipeline = PipelineOptions(
        policy=a.policy,
        backend=a.backend,
        precision=a.precision,
        budget_ms=a.budget_ms,
        score_thr=a.score_thr,
        max_boxes=a.max_boxes,
        backend_options=bopts,
        credible=a.credible,
    )
    detector = detector_options_from(a) if a.detector else None
    return ImagesOptions(a.engines, a.images, a.out, pipeline, a.dets, detector)


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    return guarded(_main, argv, prog="runtime.images")


class ImagesRun:
    """One pass over the images: their boxes (from the file or the detector) -> pose -> records."""

    def __init__(self, opts: ImagesOptions, pipe: PosePipeline, detector: Any, out: JsonArrayWriter) -> None:
        self.opts, self.pipe, self.detector, self.out = opts, pipe, detector, out
        self.acct = RunAccount()
        self.n_large = 0

    def unreadable(self, image_id: int, name: str, dets: list[Detection]) -> None:
        print(
            f"warning: {self.opts.images / name} unreadable; its {len(dets)} boxes say dropped: image_unreadable",
            file=sys.stderr,
        )
        self.acct.add_dropped_boxes("image_unreadable", len(dets))
        self.out.extend(
            {
                "image_id": image_id,
                "category_id": 1,
                "bbox": _json_box(d.bbox),
                "score": d.score,
                "dropped": "image_unreadable",
                "det_index": d.index,
            }
            for d in dets
        )

    def image(self, name: str, image_id: int, dets: list[Detection]) -> None:
        img = cv2.imread(str(self.opts.images / name))
        if img is None:
            self.unreadable(image_id, name, dets)
            return
        if self.detector is not None:
            found = self.detector(Frame(0, 0.0, 0.0, img, name))
            self.acct.add_detections(found)
            (boxes, scores), det_kpts = found, getattr(found, "keypoints", None)
            res = self.pipe(img, boxes, scores)
            self.out.extend(
                with_det_keypoints(res.to_coco_records(image_id, list(range(len(boxes)))), det_kpts)
            )
        else:
            res = self.pipe(img, [d.bbox for d in dets], [d.score for d in dets])
            self.out.extend(res.to_coco_records(image_id, [d.index for d in dets]))
        self.acct.add_result(res)
        self.n_large += int((res.route == 1).sum())


def _boxes(opts: ImagesOptions) -> tuple[Any, dict[str, tuple[int, list[Detection]]], int]:
    """(detector or None, file name -> (image id, its detections), non-person records skipped)."""
    if opts.detector:
        from runtime.detectors.factory import open_detector
        from runtime.detectors.image_dets import image_ids

        p = opts.pipeline
        detector = open_detector(
            opts.detector,
            opts.engines,
            backend=p.backend,
            precision=p.precision,
            backend_options=p.backend_options,
        )
        return detector, {name: (iid, []) for name, iid in image_ids(opts.images).items()}, 0
    assert opts.dets is not None, "--dets or --detector (argparse requires one)"
    return None, *load_detections(opts.dets, opts.images)  # all input checked before any work


def _main(argv: list[str]) -> int:
    opts = images_options(argv)
    detector, per, other = _boxes(opts)
    try:  # the pipeline (and its backend: a Triton server that is not there is bad input, exit 2)
        pipe = PosePipeline(opts.engines, opts.pipeline)
    except BaseException:
        if detector is not None and hasattr(detector, "close"):
            detector.close()
        raise
    old = signal.signal(signal.SIGTERM, _on_sigterm) if _is_main_thread() else None
    # an earlier run's results aside (named) until this one has finished: a failed rerun loses nothing
    previous = set_aside_earlier(opts.out.parent, opts.out.stem, re.compile(re.escape(opts.out.name)))
    try:
        with JsonArrayWriter(opts.out) as out:
            run = ImagesRun(opts, pipe, detector, out)
            # runtime.outcome: a backend lost mid-run is exit 3, every finished image kept
            with started_run(
                lambda: f"{run.acct.line()}; {opts.out} holds every image finished", str(opts.out)
            ):
                for name in tqdm(sorted(per), desc="images", unit="img", file=sys.stderr):
                    run.image(name, *per[name])
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        pipe.close()
        if detector is not None and hasattr(detector, "close"):
            detector.close()
    drop_earlier_outputs(previous)
    skipped = f"; {other} non-person records ignored" if other else ""
    print(
        f"{run.acct.posed} people from {len(per)} images -> {opts.out} "
        f"(large net: {run.n_large}/{run.acct.posed} crops)"
    )
    print(f"account: {run.acct.line()}{skipped}")
    return 0


def _json_box(b: tuple[float, ...]) -> list[float | None]:
    return [round(v, 2) if v == v and abs(v) != float("inf") else None for v in b]


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    raise SystemExit(main())
