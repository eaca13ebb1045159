"""The detector checked before the build spends anything: flags, graph contract, one real run.

Why a module of its own: the detector's artifacts are made after the ~40 s pose
export and its engine only on the device, so a detector ONNX the pipeline
cannot run (a 1-channel or int64 input, outputs unlike their declared shapes,
NaN or logit scores) used to build with exit 0 and fail, or find nobody, at run
time. ``build.engines`` calls :func:`early_check` right after parsing, before
any pose export; ``build.detector.add_detector`` runs the same
:func:`check_detector` when it is called on its own. Every refusal is one
:class:`~runtime.errors.InputError` line (exit 2) naming the file and what is
wrong.

What is checked, against what the runtime feeds (``runtime.detectors.letterbox``:
float32 RGB ``[N,3,S,S]`` in 0..1) and decodes (``runtime.detectors.yolo``):

* the ``--det-*`` flags: none given without a detector, no INT8 calibration
  flag with ``--det-precision fp32`` (they would be ignored);
* the graph: one image input, float32, rank 4, 3 channels on axis 1, a square
  size that is a multiple of the model's stride; a YOLO output layout
  (``build.detector.detect_layout``) and a class in range;
* one run in ONNX Runtime of the model as the build will ship it (input fixed
  to ``--det-size``) on a calibration frame (a generated frame when the build
  reads no calibration data), on a batch of two when the batch is dynamic,
  ``--det-max-batch`` allows it and the size is at most 1280: every output has its declared shape, the
  decoded output is float, finite, fits the layout, and its scores (class,
  objectness, keypoint visibility) are probabilities. The decode has no logit
  mode, so logits are refused with the fix (export with the sigmoid).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from runtime.detectors.yolo import YoloLayout, read_metadata
from runtime.errors import InputError

from .detector_model import ROLE, image_input, input_dims

# flags that only the detector reads, and those only its INT8 variants read
_INT8_FLAGS = ("det_calib_data", "det_calib_frames", "det_calib_method", "det_int8_heads", "det_drift_px")
BATCH2_MAX_SIZE = 1280  # above, one frame only: a batch of two at 4096 px takes minutes and GBs on a CPU
PROB_TOL = 1e-3  # a sigmoid in fp16 may round to 1.0005; a logit is far outside


@dataclass
class CheckedDetector:
    """A detector ONNX that passed every check, with what the checks read from it."""

    src: Path
    model: onnx.ModelProto  # as loaded, input not yet fixed
    layout: YoloLayout
    meta: dict[str, Any]
    size: int
    ran: dict[str, Any] = field(default_factory=dict)  # what the check run saw (frame source, batch)
    weights: dict[str, Any] | None = None  # an RTMDet the build exported: its checkpoint's record


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def given_det_flags(args: argparse.Namespace) -> list[str]:
    """The ``--det-*`` dests whose value differs from the parser default (i.e. the user set them)."""
    from .detector_model import add_detector_arguments

    p = argparse.ArgumentParser(add_help=False)
    add_detector_arguments(p)
    defaults = vars(p.parse_args([]))
    return [d for d, v in defaults.items() if d != "detector" and hasattr(args, d) and getattr(args, d) != v]


def check_flags(args: argparse.Namespace, has_detector: bool) -> None:
    """Refuse ``--det-*`` flags that the build would accept and then ignore."""
    given = given_det_flags(args)
    if given and not has_detector:
        raise InputError(
            f"{_flag(given[0])} is set but there is no detector to apply it to",
            _flag(given[0]),
            "add --detector PATH.onnx (or a config that names one) or drop the --det-* flags",
        )
    unused = [d for d in given if d in _INT8_FLAGS]
    if unused and getattr(args, "det_precision", "all") == "fp32":
        raise InputError(
            f"{_flag(unused[0])} only affects the detector's INT8 variants, which "
            "--det-precision fp32 does not make",
            _flag(unused[0]),
            "drop it or use --det-precision all",
        )


def resolve_path(detector: str | Path) -> Path:
    """A config's detector path may be repo-relative."""
    det = Path(detector)
    return det if det.is_absolute() or det.exists() else Path(__file__).resolve().parents[1] / det


NO_DETECTOR = "none"


def chosen_detector(args: argparse.Namespace, cfg: Any) -> str | Path | None:
    """The build's detector: ``--detector`` when given (``none``: none, not even the config's
    default), else the config's (``PipelineConfig.detector``), else None."""
    given = getattr(args, "detector", None)
    if given is not None and str(given) == NO_DETECTOR:
        return None
    return given or getattr(cfg, "detector", None)


def early_check(args: argparse.Namespace, cfg: Any, calib_default: Path) -> CheckedDetector | None:
    """``build.engines``: the flags and the detector (``--detector`` or the config's), before any export.

    An RTMDet name or ``.pth`` (build.detector_rtmdet) is exported to an ONNX first, and
    ``args.det_size`` becomes the size it was exported at (the variant's own unless given)."""
    detector = chosen_detector(args, cfg)
    check_flags(args, bool(detector))
    if not detector:
        return None
    from .detector_rtmdet import is_rtmdet, materialize, zoo_detector

    weights = None
    if is_rtmdet(detector):
        if not getattr(args, "detector", None) and zoo_detector(detector) is None:
            detector = resolve_path(detector)  # a config's .pth is repo-relative, like its pose weights
        src, args.det_size, weights = materialize(detector, args)
    else:
        src = resolve_path(detector)
    det = check_detector(src, args, calib_default)
    det.weights = weights
    return det


def detector_offer(manifest: dict[str, Any], cfg: Any) -> str | None:
    """The summary line a build without a detector prints for a real-architecture config (one
    whose weights are not the synthetic-scene fixtures): video would fall back to HOG, so say
    how to add a released detector. None: it has one, or it is a fixture build."""
    if ROLE in manifest.get("models", {}) or getattr(cfg, "calib_domain", "photos") == "synthetic":
        return None
    return (
        "detector: none, so video falls back to OpenCV's HOG; add a person detector with "
        "--detector rtmdet-nano-person (320x320, Apache-2.0 weights; rtmdet-m-person for accuracy) "
        "or --detector PATH.onnx"
    )


# -- the graph ----------------------------------------------------------------------------------------


def check_input(model: onnx.ModelProto, where: str, size: int, max_batch: int) -> None:
    """float32 [N,3,S,S]: what ``runtime.detectors.letterbox.Letterboxer`` feeds, at ``--det-size``."""
    vi = image_input(model, where)
    elem = vi.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(elem).lower() if elem else "not a tensor"
        raise InputError(
            f"{where}: input {vi.name} is {name}; the pipeline feeds float32 RGB in 0..1",
            "--detector",
            "export the detector with a float32 image input",
        )
    dims = input_dims(vi)
    if dims is None or len(dims) != 4:
        raise InputError(
            f"{where}: input {vi.name} has rank {'unknown' if dims is None else len(dims)}",
            "--detector",
            "export it with an image input [N,3,H,W] (NCHW)",
        )
    if isinstance(dims[1], int) and dims[1] != 3:
        raise InputError(
            f"{where}: input {vi.name} {dims} has {dims[1]} channels on axis 1; the pipeline "
            "feeds 3 (RGB, NCHW)",
            "--detector",
            "export a 3-channel NCHW model (not grey, not NHWC)",
        )
    h, w = dims[2:]
    if isinstance(h, int) and isinstance(w, int) and h != w:
        raise InputError(
            f"{where}: input is fixed at {h}x{w}; the detector letterboxes frames to a square",
            "--detector",
            "re-export it square (imgsz=S) or with a dynamic size",
        )
    if isinstance(dims[0], int) and dims[0] > 1:  # the engine profile and the runtime start at batch 1
        raise InputError(
            f"{where}: input batch is fixed at {dims[0]}; the detector runs 1 to --det-max-batch "
            "frames per call",
            "--detector",
            "export it with a dynamic batch (or batch 1)",
        )
    if dims[0] == 1 and max_batch != 1:
        raise InputError(
            f"{where}: input batch is fixed at 1 but --det-max-batch is {max_batch}",
            "--det-max-batch",
            "pass --det-max-batch 1 or export it with a dynamic batch",
        )
    fixed = h if isinstance(h, int) else None
    if fixed and fixed != size:
        raise InputError(
            f"{where}: input is fixed at {fixed}x{fixed}",
            "--det-size",
            f"pass --det-size {fixed} or re-export with a dynamic size",
        )


def check_graph(src: Path, args: argparse.Namespace) -> CheckedDetector:
    """Everything that can be read from the file without running it."""
    from .detector_model import DEFAULT_MAX_BATCH, DEFAULT_SIZE, detect_layout

    if not src.is_file():
        what = "is a folder, not an ONNX file" if src.is_dir() else "not found"
        raise InputError(f"detector ONNX {src} {what}", "--detector", "pass the path of a YOLO .onnx file")
    try:
        model = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise InputError(
            f"{src} is not an ONNX model ({type(e).__name__})", "--detector", "pass a YOLO .onnx export"
        ) from None
    if not len(model.graph.output):
        raise InputError(f"{src.name} has no outputs", "--detector", "pass a YOLO .onnx export")
    size = int(getattr(args, "det_size", DEFAULT_SIZE))
    if size < 32 or size % 32:  # build.detector.det_size refuses this at parse time; callers of the API too
        raise InputError(
            f"detector size {size} is not a positive multiple of 32",
            "--det-size",
            "use e.g. 640 or 480 (YOLO strides are up to 32)",
        )
    meta = read_metadata(model)
    stride = meta.get("stride")
    if isinstance(stride, int) and stride > 0 and size % stride:
        raise InputError(
            f"{src.name} has stride {stride} but --det-size {size} is not a multiple of it",
            "--det-size",
            f"pass a multiple of {stride} (e.g. {max(stride, size // stride * stride)})",
        )
    check_input(model, src.name, size, int(getattr(args, "det_max_batch", DEFAULT_MAX_BATCH)))
    layout = detect_layout(model, getattr(args, "det_layout", None), src.name)
    cls = int(getattr(args, "det_class", 0))
    if not 0 <= cls < layout.num_classes:
        raise InputError(
            f"class {cls} is out of range for a detector with {layout.num_classes} classes",
            "--det-class",
            "0 is the person class of COCO-trained YOLO models",
        )
    return CheckedDetector(src, model, layout, meta, size)


# -- one run ------------------------------------------------------------------------------------------


def _frame(args: argparse.Namespace, size: int, calib_default: Path) -> tuple[np.ndarray, str]:
    """One letterboxed calibration frame [1,3,S,S] (as the INT8 variants will read them), else a
    generated one (--det-precision fp32 reads no calibration data)."""
    from .detector_model import calib_frames, calib_source

    data, flag = calib_source(args, calib_default)
    if getattr(args, "det_precision", "all") == "all":  # the variants need it: a bad source is refused now
        return calib_frames(data, size, 1, flag)[:1], str(data)
    try:
        return calib_frames(data, size, 1, flag)[:1], str(data)
    except (InputError, OSError):
        img = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        img[:, :, : size // 8] = img[:, :, size - size // 8 :] = 114 / 255  # letterbox bars, as frames have
        return img, "a generated frame"


def _session(model: onnx.ModelProto, where: str):
    from runtime.backends.ort_session import open_session

    try:  # quiet: ORT's shape-mismatch warnings; the check below says it in one line
        return open_session(model.SerializeToString(), quiet=True)
    except Exception as e:  # noqa: BLE001 - ORT raises its own types for invalid graphs and ops
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(
            f"ONNX Runtime cannot load {where} ({first[:200]})",
            "--detector",
            "re-export it (opset 13+, standard ops)",
        ) from None


def _range(what: str, a: np.ndarray, where: str, layout: YoloLayout) -> None:
    if a.size and (a.min() < -PROB_TOL or a.max() > 1 + PROB_TOL):
        guessed = layout.source != "metadata"  # a wrong --det-layout reads coordinates as scores
        raise InputError(
            f"{where}: the output gives {what} outside [0, 1] (min {a.min():.3g}, "
            f"max {a.max():.3g}) on a calibration frame; the decode reads probabilities",
            "--det-layout" if guessed else "--detector",
            ("check --det-layout (a pose model read as a detect layout gives this), else " if guessed else "")
            + "export it with the sigmoid on its scores (Ultralytics exports do), not logits",
        )


def check_outputs(
    outs: list[np.ndarray],
    declared: list[tuple[str, list[Any] | None]],
    layout: YoloLayout,
    batch: int,
    where: str,
) -> None:
    """Declared shapes, then the decoded (first) output: float, finite, layout, probabilities."""
    for (name, decl), got in zip(declared, outs):
        shape = list(np.shape(got))
        if decl is not None and (
            len(decl) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(decl, shape))
        ):
            raise InputError(
                f"{where}: output {name} is declared {decl} but gives {shape} on a batch of {batch}",
                "--detector",
                "re-export it (its graph and declared shapes disagree)",
            )
    out = np.asarray(outs[0])
    name = declared[0][0]
    if not np.issubdtype(out.dtype, np.floating):
        raise InputError(
            f"{where}: output {name} is {out.dtype}; the decode reads float boxes and scores",
            "--detector",
            "export it without NMS or integer post-processing",
        )
    axis = 2 if layout.family == "yolov5" else 1
    if out.ndim != 3 or out.shape[0] != batch or out.shape[axis] != layout.features:
        raise InputError(
            f"{where}: output {name} is {list(out.shape)} on a batch of {batch}; the "
            f"{layout.family} layout needs [{batch}, "
            + ("A, " if axis == 2 else "")
            + f"{layout.features}"
            + ("" if axis == 2 else ", A")
            + "]",
            "--detector",
            "re-export it without NMS, with a dynamic or matching batch",
        )
    a = out.astype(np.float32).transpose(0, 2, 1) if axis == 1 else out.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=(0, 1)))
        raise InputError(
            f"{where}: output {name} has {int(bad.sum())} NaN/inf values (of {a.size}, in "
            f"{len(cols)} of its {a.shape[2]} values per candidate) on a calibration frame",
            "--detector",
            "check the export (an fp16 overflow, a division by zero) and re-export",
        )
    first = 5 if layout.family == "yolov5" else 4
    if layout.family == "yolov5":
        _range("objectness scores", a[..., 4], where, layout)
    _range("class scores", a[..., first : first + layout.num_classes], where, layout)
    if layout.kpt_shape and layout.kpt_shape[1] == 3:
        k, d = layout.kpt_shape
        vis = a[..., first + layout.num_classes :].reshape(*a.shape[:2], k, d)[..., 2]
        _range("keypoint visibilities", vis, where, layout)


def check_run(det: CheckedDetector, args: argparse.Namespace, calib_default: Path) -> None:
    """Run the model as it will be shipped (input fixed to the size) once and check what comes out."""
    from .detector_model import DEFAULT_MAX_BATCH, fix_input_size

    model = onnx.ModelProto()
    model.CopyFrom(det.model)
    fix_input_size(model, det.size)
    sess = _session(model, det.src.name)
    frame, source = _frame(args, det.size, calib_default)
    dynamic = not isinstance(input_dims(image_input(model, det.src.name))[0], int)
    two = (
        dynamic
        and int(getattr(args, "det_max_batch", DEFAULT_MAX_BATCH)) >= 2
        and det.size <= BATCH2_MAX_SIZE
    )
    batch = 2 if two else 1
    feed = np.ascontiguousarray(np.repeat(frame, batch, axis=0))
    try:
        outs = sess.run(None, {sess.get_inputs()[0].name: feed})
    except Exception as e:  # noqa: BLE001 - ORT's runtime failures (shapes, ops) have several types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(
            f"{det.src.name} fails in ONNX Runtime on a [{batch},3,{det.size},{det.size}] frame "
            f"batch ({first[:200]})",
            "--detector",
            "re-export it (with a dynamic batch, or pass --det-max-batch 1)",
        ) from None
    declared = [(o.name, input_dims(o)) for o in model.graph.output]
    check_outputs(outs, declared, det.layout, batch, det.src.name)
    det.ran = {"frame": source, "batch": batch}


def check_detector(src: Path, args: argparse.Namespace, calib_default: Path) -> CheckedDetector:
    """The graph checks, then one run: a detector the pipeline can build and run, or one InputError."""
    det = check_graph(Path(src), args)
    check_run(det, args, calib_default)
    return det


__all__ = [
    "CheckedDetector",
    "check_detector",
    "chosen_detector",
    "check_flags",
    "detector_offer",
    "early_check",
    "given_det_flags",
    "resolve_path",
]
