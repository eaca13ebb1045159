"""``python -m build.engines``: checkpoints -> ONNX -> calibration -> engines (or a build plan).

One command from weights to a ready artifacts folder. Every stage that needs
hardware this machine lacks says so in one line and the rest still runs.
Flags, checkpoints, ``--calib-data`` and the detector (build/detector_check.py)
are checked before anything is exported; the build writes a staging folder
that replaces OUT/<config>-<target> only when every stage is done
(build/staging.py), so a failed or interrupted rebuild leaves the previous
artifacts as they were. ``--triton-repo`` is staged beside it and both go in
together or neither does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from calib.stage import add_calib_arguments, run_calibration
from runtime.artifacts.manifest import save_manifest
from runtime.cli.args import (
    OneLineParser,
    existing_path,
    nonneg_int,
    number,
    output_dir,
    percent,
    unit_float,
)
from runtime.errors import InputError, guarded

from .checkpoint import TRUST_FLAG
from .configs import DEFAULT_CONFIG, PairChoice, add_pair_arguments, get_config, list_configs, paired_config
from .costs import format_cost_table, measure_routing_costs
from .detector import add_detector
from .detector_check import CheckedDetector, chosen_detector, detector_offer, early_check
from .detector_model import add_detector_arguments
from .export import OPSET
from .staging import StagedDir, commit_together
from .triton_repo import (
    add_triton_arguments,
    check_options,
    options_from_args,
)
from .triton_repo import (
    build_stage as triton_stage,
)
from .triton_repo import (
    print_summary as print_repo_summary,
)
from .trt import add_trt_arguments, build_or_plan, check_trt_flags
from .zoo import checkpoint_arg

# The default calibration set of a config trained on synthetic scenes (PipelineConfig.calib_domain):
# the first images of the fixtures' own calibration split (build.synth.coco.split_seed), ~600
# detector boxes in ~5 s, the split `make accuracy` calibrates on.
SYNTH_CALIB_IMAGES = 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(
        prog="python -m build.engines",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help="named pipeline config (see --list-configs)")
    p.add_argument("--list-configs", action="store_true", help="print the known configs and exit")
    add_pair_arguments(p)  # --small/--large ARCH, --small-head/--large-head KIND
    p.add_argument(
        "--out",
        default="artifacts",
        type=output_dir,
        help="output root; artifacts go to OUT/<config>-<target>/",
    )
    for role in ("small", "large", "router"):
        p.add_argument(
            f"--{role}-ckpt",
            default=None,
            type=checkpoint_arg,
            help=f"MMPose 1.x .pth for the {role} network, or a released checkpoint's name "
            "(e.g. rtmpose-s; `python -m build.zoo list`), downloaded once into the cache "
            "(default: the config's bundled weights, else seeded random weights with a warning)",
        )
    p.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow checkpoints that need full unpickling (runs code from the file; "
        "only for files you trust); default: weights_only loading, others refused",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed for random weights and sampling")
    p.add_argument("--opset", type=number(int, lo=13, hi=23), default=OPSET, help="ONNX opset (13-23)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim/onnxslim")
    p.add_argument(
        "--theta",
        type=unit_float,
        default=None,
        help="routing: k1 position in the score range (default: the config's)",
    )
    p.add_argument(
        "--p",
        type=percent,
        default=None,
        help="routing: percent of crops for the large net, as in Dyn-R50-H32/50 (default: the config's)",
    )
    p.add_argument(
        "--calib-data",
        type=existing_path,
        default=None,
        help="COCO-format folder (images + person_keypoints.json + person_detections.json), "
        "image folder or video for routing thresholds and calibration (default: configs "
        "whose bundled weights were trained on synthetic scenes, the fixtures, draw "
        f"{SYNTH_CALIB_IMAGES} images of their calibration split; others "
        "../shared/data/coco-mini)",
    )
    p.add_argument(
        "--fuse-decode",
        action="store_true",
        help="also write <role>.plugin.onnx with the decode fused into the DynPoseDecode "
        "TensorRT plugin (needs libdynpose_plugins.so on the device)",
    )
    p.add_argument(
        "--calib-boxes",
        choices=("detections", "gt"),
        default="detections",
        help="which boxes of --calib-data make the calibration crops",
    )
    add_calib_arguments(p)  # --precision, --calib-method, --calib-max-crops
    add_trt_arguments(p)  # --target and the TensorRT builder's knobs
    add_detector_arguments(p)  # --detector PATH.onnx and its --det-* knobs
    add_triton_arguments(p, with_repo=True)  # --triton-repo DIR and the repository's knobs
    return p.parse_args(argv)


def _routing_stage(out_dir: Path, manifest: dict, calib, theta: float, p: float) -> None:
    """Fit k1/k2 on the router's scores for the calibration crops, run through ONNX Runtime
    exactly as the CPU backend will run them."""
    from runtime.backends.ort_session import open_session
    from runtime.pose.routing import fit_thresholds

    sess = open_session(out_dir / manifest["models"]["router"]["onnx"])
    scores = sess.run(["score"], {"input": calib.for_role(manifest, "router")})[0].reshape(-1)
    band = fit_thresholds(scores, theta, p)
    manifest["routing"] = {
        "theta": band.theta,
        "p": band.p,
        "k1": band.k1,
        "k2": band.k2,
        "large_fraction": band.large_fraction,
        "n_calib": band.n,
        "score_min": float(scores.min()),
        "score_max": float(scores.max()),
        "source": calib.source,
    }


def _print_summary(out_dir: Path, manifest: dict) -> None:
    print(
        f"\nartifacts: {out_dir}  (config {manifest['config']}, target {manifest['target']}, "
        f"weights {manifest['weights']})"
    )
    print(f"{'role':<7} {'arch':<11} {'head':<8} {'GMACs':>7} {'params M':>9} {'parity':>9}  onnx")
    for role, m in manifest["models"].items():
        if "gmacs" not in m:  # the detector: its outputs' layout; no torch model counted or compared here
            # rtmdet-nano from its checkpoint; a user's YOLO ONNX is named by its layout
            arch = (m.get("weights") or {}).get("arch") or m["layout"]["family"]
            print(f"{role:<8} {arch:<10} {m['layout']['family']:<8} {'-':>7} {'-':>9} {'-':>9}  {m['onnx']}")
            continue
        err = max(m["parity_max_abs_err"].values())
        print(
            f"{role:<7} {m['arch']:<11} {m['head']:<8} {m['gmacs']:>7.3f} {m['params_m']:>9.2f} "
            f"{err:>9.1e}  {m['onnx']}"
        )
    r = manifest.get("routing")
    if r:
        print(
            f"routing: k1={r['k1']:.4f} k2={r['k2']:.4f} large fraction {r['large_fraction']:.3f} "
            f"(theta {r['theta']}, p {r['p']}%, {r['n_calib']} crops)"
        )
        if r.get("costs"):
            print(format_cost_table(r["costs"]))
            if r["costs"].get("warning"):  # again at the end, where a user reads
                print(r["costs"]["warning"], file=sys.stderr)


def calib_source(cfg, args: argparse.Namespace, scratch: Path) -> tuple[Path, dict]:
    """The calibration data of this build and its manifest record (``calib_data``).

    ``--calib-data`` when given. Otherwise a config whose bundled weights were trained on
    synthetic scenes (the fixtures, ``calib_domain="synthetic"``) calibrates on its own
    calibration split, drawn into ``scratch``: the domain it was trained on, the same whether
    or not ``../shared`` lies beside the clone, so a bare clone builds. Any other config (or
    a fixture config with a user's checkpoint) needs real people: ``../shared/data/coco-mini``,
    refused in one line when it is absent.
    """
    from calib.data import DEFAULT_CALIB

    if args.calib_data is not None:
        return Path(args.calib_data), {"origin": "--calib-data", "path": str(args.calib_data)}
    own_weights = not any(getattr(args, f"{r}_ckpt") for r in ("small", "large", "router"))
    if cfg.calib_domain == "synthetic" and own_weights:
        from .synth.coco import default_photo_dir, load_photos, write_split

        photos = load_photos()
        backdrops = (
            f"{len(photos)} photo backdrops from {default_photo_dir()}"
            if photos
            else f"generated backdrops ({default_photo_dir()} absent)"
        )
        data = write_split(
            scratch / "calib-synth", "calib", SYNTH_CALIB_IMAGES, args.seed, photos, progress=False
        )
        return data, {
            "origin": "synthetic",
            "split": "calib",
            "seed": args.seed,
            "n_images": SYNTH_CALIB_IMAGES,
            "backdrops": backdrops,
            "source": f"synthetic scenes (build.synth calib split, seed {args.seed}, "
            f"{SYNTH_CALIB_IMAGES} images, {backdrops}; {cfg.name}'s training domain)",
        }
    if not DEFAULT_CALIB.exists():
        raise InputError(
            f"config {cfg.name} calibrates on real people and the default calibration data "
            f"{DEFAULT_CALIB} is absent",
            "--calib-data",
            "pass --calib-data (a COCO folder, a folder of images or a video of people)",
        )
    return DEFAULT_CALIB, {"origin": "default", "path": str(DEFAULT_CALIB)}


def _synthetic_detector(cfg, args: argparse.Namespace) -> bool:
    """The config's own detector, trained on synthetic scenes (the fixture configs): its INT8
    frames default to its training domain, so a bare clone builds it with nothing beside it."""
    return not args.detector and bool(cfg.detector) and cfg.calib_domain == "synthetic"  # not --detector none


def detector_calib_default(cfg, args: argparse.Namespace, scratch: Path) -> Path:
    """Where the detector's INT8 frames come from when no flag names them: the images of the
    build's synthetic calibration split (the same drawing the pose nets calibrate on, drawn once
    into ``scratch``) for a fixture config's own detector; photos of people otherwise."""
    from calib.data import DEFAULT_CALIB

    if not _synthetic_detector(cfg, args) or args.det_calib_data or args.calib_data:
        return DEFAULT_CALIB
    from .synth.coco import load_photos, write_split

    split = write_split(scratch / "calib-synth", "calib", SYNTH_CALIB_IMAGES, args.seed, load_photos(), False)
    return split / "images"


def _check_detector_data(cfg, args: argparse.Namespace) -> None:
    """The detector's INT8 frames are photos of people (never the pose nets' synthetic split),
    unless the detector is the config's own synthetic-trained one: refuse a missing default
    before anything is exported."""
    from calib.data import DEFAULT_CALIB

    if (
        chosen_detector(args, cfg)
        and not _synthetic_detector(cfg, args)
        and getattr(args, "det_precision", "all") == "all"
        and not (args.det_calib_data or args.calib_data)
        and not DEFAULT_CALIB.exists()
    ):
        raise InputError(
            f"the detector's INT8 calibration needs photos of people and the default "
            f"{DEFAULT_CALIB} is absent",
            "--det-calib-data",
            "pass --det-calib-data (a folder of images or a video) or --det-precision fp32",
        )


def _build(
    out_dir: Path,
    final_dir: Path,
    cfg,
    args: argparse.Namespace,
    scratch: Path,
    det: CheckedDetector | None = None,
    det_calib: Path | None = None,
) -> tuple[int, dict]:
    """Every stage, written into ``out_dir`` (the staging folder of ``final_dir``)."""
    from calib.data import DEFAULT_CALIB, load_calib

    from .artifacts import ROLES, add_plugin_variants, crop_hw, export_all, new_manifest, weights_summary

    manifest = new_manifest(cfg, args.target)
    # the calibration data is read (and a bad folder refused) before any export; one crop per box
    # at each net's input size (a 256x192 small net beside a 384x288 large one)
    data, manifest["calib_data"] = calib_source(cfg, args, scratch)
    try:
        calib = load_calib(data, args.calib_boxes, sizes=[crop_hw(cfg, r) for r in ROLES])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # missing files, bad JSON/records
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(
            f"cannot use the calibration data ({type(e).__name__}: {first[:160]})",
            f"--calib-data {data}",
            "pass a COCO folder (images + person_keypoints.json + "
            "person_detections.json), a folder of images or a video",
        ) from None
    if "source" in manifest["calib_data"]:  # a drawn set: name the drawing, not its scratch folder
        calib.source = f"{manifest['calib_data']['source']} ({args.calib_boxes})"
    print(f"calibration data: {calib.describe()}", file=sys.stderr)
    calib_args = argparse.Namespace(**{**vars(args), "calib_data": data})  # presence, labelled report
    with tqdm(total=3 * 2 + 1, desc="build", unit="step", file=sys.stderr) as bar:

        def progress(msg: str) -> None:
            bar.set_postfix_str(msg)
            bar.update(1)

        ckpts = {"small": args.small_ckpt, "large": args.large_ckpt, "router": args.router_ckpt}
        manifest["models"], nets = export_all(
            cfg,
            out_dir,
            ckpts,
            args.seed,
            args.opset,
            not args.no_simplify,
            progress,
            trust=args.trust_checkpoint,
        )
        manifest["weights"] = weights_summary(manifest["models"])
        if args.fuse_decode:
            add_plugin_variants(out_dir, manifest["models"])
        progress("routing thresholds")
        _routing_stage(
            out_dir,
            manifest,
            calib,
            cfg.theta if args.theta is None else args.theta,
            cfg.p if args.p is None else args.p,
        )
        run_calibration(out_dir, manifest, calib, calib_args)
        labelled = manifest["calibration"]["report"].get("labelled")
        if labelled and "source" in manifest["calib_data"]:  # not the scratch folder, gone after the build
            labelled["data"] = manifest["calib_data"]["source"]
        measure_routing_costs(out_dir, manifest, args.target, log=print)  # ms/crop at the shipped precision
        if det is not None:  # checked in main, before the pose export
            add_detector(out_dir, manifest, det.src, args, det_calib or DEFAULT_CALIB, checked=det)
    if manifest["weights"] == "random":
        print(
            "WARNING: random weights: keypoints, routing and accuracy numbers from these "
            "artifacts mean nothing",
            file=sys.stderr,
        )
    rc = build_or_plan(out_dir, manifest, args, final_dir=final_dir)  # engines, or build_plan.sh + one line
    save_manifest(out_dir, manifest)
    return rc, manifest


def pipeline_config(args: argparse.Namespace):
    """The --config, with the nets --small/--large (and their heads) name; a pair that cannot
    run is refused in one line before anything is built."""
    try:
        return paired_config(get_config(args.config), PairChoice.from_args(args))
    except ValueError as e:
        raise InputError(
            str(e), "--small/--large", "see `python -m build.engines --help` for the nets"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        for name in list_configs():
            print(f"{name:<20} {get_config(name).description}")
        return 0
    cfg = pipeline_config(args)
    from .artifacts import check_zoo_names

    check_zoo_names(cfg, {r: getattr(args, f"{r}_ckpt") for r in ("small", "large", "router")})
    check_trt_flags(args)
    if args.triton_repo is not None:
        check_options(options_from_args(args), args.triton_repo)
    _check_detector_data(cfg, args)  # a missing default for the detector's INT8 frames, before its check run
    final_dir = args.out / f"{cfg.name}-{args.target}"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dynpose-build-") as scratch:
        det_calib = detector_calib_default(cfg, args, Path(scratch))
        # --det-* flags and one run of the detector, before any export
        det = early_check(args, cfg, det_calib)
        with StagedDir(final_dir) as stage:
            rc, manifest = _build(stage.path, final_dir, cfg, args, Path(scratch), det, det_calib)
            if rc != 0:  # e.g. --require-trt without TensorRT: nothing replaces the previous artifacts
                print(f"build not finished (exit {rc}): {final_dir} was left as it was")
                return rc
            # --triton-repo: staged too, committed with the build
            with triton_stage(stage.path, args) as repo:
                commit_together(stage, *([repo[0]] if repo else []))
    if repo:
        print_repo_summary(args.triton_repo, repo[1])
    _print_summary(final_dir, manifest)
    offer = detector_offer(manifest, cfg)  # a real-architecture build without a detector: say how to add one
    if offer:
        print(offer)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return rc


def cli(argv: list[str] | None = None) -> int:
    """``python -m build.engines``: main behind the one-line error boundary (runtime.errors)."""
    return guarded(main, argv, prog="python -m build.engines")


if __name__ == "__main__":
    raise SystemExit(cli())
