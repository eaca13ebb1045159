"""``python -m build.engines``: checkpoints -> ONNX -> calibration -> engines (or a build plan).

One command from weights to a ready artifacts folder. Every stage that needs
hardware this machine lacks says so in one line and the rest still runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from calib.stage import add_calib_arguments, run_calibration
from runtime.manifest import save_manifest

from .trt import add_trt_arguments, build_or_plan
from .configs import DEFAULT_CONFIG, get_config, list_configs
from .detector import add_detector, add_detector_arguments
from .export import OPSET
from .triton_repo import add_triton_arguments, build_stage as triton_stage



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m build.engines", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="named pipeline config (see --list-configs)")
    p.add_argument("--list-configs", action="store_true", help="print the known configs and exit")
    p.add_argument("--out", default="artifacts", type=Path,
                   help="output root; artifacts go to OUT/<config>-<target>/")
    for role in ("small", "large", "router"):
        p.add_argument(f"--{role}-ckpt", default=None,
                       help=f"MMPose 1.x .pth for the {role} network (default: the config's bundled "
                            "weights, else seeded random weights with a warning)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and sampling")
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim/onnxslim")
    p.add_argument("--theta", type=float, default=None, help="routing: k1 position in the score range "
                   "(default: the config's)")
    p.add_argument("--p", type=float, default=None, help="routing: percent of crops for the large net, "
                   "as in Dyn-R50-H32/50 (default: the config's)")
    p.add_argument("--calib-data", type=Path, default=None,
                   help="COCO-format folder (images + person_keypoints.json + person_detections.json) "
                        "for routing thresholds and calibration (default: ../shared/data/coco-mini)")
    p.add_argument("--fuse-decode", action="store_true",
                   help="also write <role>.plugin.onnx with the decode fused into the DynPoseDecode "
                        "TensorRT plugin (needs libdynpose_plugins.so on the device)")
    p.add_argument("--calib-boxes", choices=("detections", "gt"), default="detections",
                   help="which boxes of --calib-data make the calibration crops")
    add_calib_arguments(p)     # --precision, --calib-method, --calib-max-crops
    add_trt_arguments(p)       # --target and the TensorRT builder's knobs
    add_detector_arguments(p)  # --detector PATH.onnx and its --det-* knobs
    add_triton_arguments(p, with_repo=True)   # --triton-repo DIR and the repository's knobs
    return p.parse_args(argv)


def _routing_stage(out_dir: Path, manifest: dict, calib, theta: float, p: float) -> None:
    """Fit k1/k2 on the router's scores for the calibration crops, run through ONNX Runtime
    exactly as the CPU backend will run them."""
    import onnxruntime as ort

    from runtime.routing import fit_thresholds

    sess = ort.InferenceSession(str(out_dir / manifest["models"]["router"]["onnx"]),
                                providers=["CPUExecutionProvider"])
    scores = sess.run(["score"], {"input": calib.crops})[0].reshape(-1)
    band = fit_thresholds(scores, theta, p)
    manifest["routing"] = {"theta": band.theta, "p": band.p, "k1": band.k1, "k2": band.k2,
                           "large_fraction": band.large_fraction, "n_calib": band.n,
                           "score_min": float(scores.min()), "score_max": float(scores.max()),
                           "source": calib.source}


def _print_summary(out_dir: Path, manifest: dict) -> None:
    print(f"\nartifacts: {out_dir}  (config {manifest['config']}, target {manifest['target']}, "
          f"weights {manifest['weights']})")
    print(f"{'role':<7} {'arch':<11} {'head':<8} {'GMACs':>7} {'params M':>9} {'parity':>9}  onnx")
    for role, m in manifest["models"].items():
        if "gmacs" not in m:   # the detector: a user's ONNX, no torch model to count or compare
            print(f"{role:<8} {m['layout']['family']:<10} {m['head']:<8} {'-':>7} {'-':>9} {'-':>9}  {m['onnx']}")
            continue
        err = max(m["parity_max_abs_err"].values())
        print(f"{role:<7} {m['arch']:<11} {m['head']:<8} {m['gmacs']:>7.3f} {m['params_m']:>9.2f} "
              f"{err:>9.1e}  {m['onnx']}")
    r = manifest.get("routing")
    if r:
        print(f"routing: k1={r['k1']:.4f} k2={r['k2']:.4f} large fraction {r['large_fraction']:.3f} "
              f"(theta {r['theta']}, p {r['p']}%, {r['n_calib']} crops)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        for name in list_configs():
            print(f"{name:<20} {get_config(name).description}")
        return 0
    cfg = get_config(args.config)
    out_dir = args.out / f"{cfg.name}-{args.target}"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from calib.data import DEFAULT_CALIB, load_calib

    from .artifacts import add_plugin_variants, export_all, new_manifest, weights_summary

    manifest = new_manifest(cfg, args.target)
    with tqdm(total=3 * 2 + 1, desc="build", unit="step", file=sys.stderr) as bar:
        def progress(msg: str) -> None:
            bar.set_postfix_str(msg)
            bar.update(1)

        ckpts = {"small": args.small_ckpt, "large": args.large_ckpt, "router": args.router_ckpt}
        manifest["models"], nets = export_all(cfg, out_dir, ckpts, args.seed, args.opset,
                                              not args.no_simplify, progress)
        manifest["weights"] = weights_summary(manifest["models"])
        if args.fuse_decode:
            add_plugin_variants(out_dir, manifest["models"])
        save_manifest(out_dir, manifest)
        progress("routing thresholds")
        calib = load_calib(args.calib_data or DEFAULT_CALIB, args.calib_boxes)
        print(f"calibration data: {calib.describe()}", file=sys.stderr)
        _routing_stage(out_dir, manifest, calib, cfg.theta if args.theta is None else args.theta,
                       cfg.p if args.p is None else args.p)
        run_calibration(out_dir, manifest, calib, args)
        detector = args.detector or cfg.detector
        if detector:   # a config's path may be repo-relative
            det = Path(detector)
            det = det if det.is_absolute() or det.exists() else Path(__file__).resolve().parents[1] / det
            add_detector(out_dir, manifest, det, args, DEFAULT_CALIB)
    save_manifest(out_dir, manifest)
    if manifest["weights"] == "random":
        print("WARNING: random weights: keypoints, routing and accuracy numbers from these "
              "artifacts mean nothing", file=sys.stderr)
    rc = build_or_plan(out_dir, manifest, args)   # engines here, or build_plan.sh + one line
    save_manifest(out_dir, manifest)
    triton_stage(out_dir, args)                   # --triton-repo: a Triton model repository too
    _print_summary(out_dir, manifest)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
