"""A Triton Inference Server model repository from an artifacts folder.

``python -m build.triton_repo --engines ARTIFACTS --out REPO`` (or ``python -m
build.engines ... --triton-repo REPO``) writes one model per role in the
manifest (router, small, large, and a detector when the manifest lists one),
plus, optionally, the ``dynpose`` BLS model (crops in, one tensor per net input size;
decoded keypoints out)::

    REPO/<role>/config.pbtxt          I/O from the manifest, batching, instances
    REPO/<role>/<v>/model.onnx        python kind: ONNX Runtime inside Triton's python backend
    REPO/<role>/<v>/model.py
    REPO/<role>/<v>/model.plan        plan kind: the TensorRT engine (tensorrt_plan platform)
    REPO/<role>/<v>/manifest.json     the manifest of the build this version came from

Why hand-written text and not a generator library: a config.pbtxt is a few
protobuf text fields; the tests parse every file with tritonclient's own
``model_config_pb2`` so a field Triton rejects fails there. Every build gets
the next version number in all roles at once, and each config records the
ONNX sha256 of its build, so the ``triton`` client backend refuses a server
whose models come from a different build than the client's manifest.

The repository is written like a build (build/staging.py): the new version
and configs go into a staging sibling that takes the old repository's other
versions and models as hard links and replaces it in one swap, so a full
disk or a kill leaves the previous repository as a server last loaded it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.artifacts.manifest import ManifestError, load_manifest, manifest_path, model_file
from runtime.cli.args import OneLineParser, nonneg_int, output_dir, positive_int, run_precision
from runtime.errors import EXIT_INPUT, InputError, guarded, register_expected
from runtime.pose.preprocess import INPUT_HW, net_input_hw
from runtime.safe_io import atomic_write_text, copy_file

from .staging import StagedDir

register_expected(ManifestError, EXIT_INPUT)

MODELS_SRC = Path(__file__).with_name("triton_models")
KINDS = ("auto", "python", "plan")
DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
CPU_MAX_BATCH = 32  # python kind: the pipeline's default chunk (PipelineOptions.max_batch)
QUEUE_DELAY_US = 500  # short: a camera frame's crops arrive together; wait little for others
BLS_NAME = "dynpose"
ORT_SESSION = Path(__file__).resolve().parents[1] / "runtime" / "backends" / "ort_session.py"
# The numpy-only project code the BLS model imports (as package ``runtime``): the head registry
# with every decoder, and the routing band. tests/test_triton_repo.py imports the shipped copy alone.
BLS_LIB = ("heads", "pose/routing.py")


@dataclass(frozen=True)
class RepoOptions:
    kind: str = "auto"  # auto: plan for a GPU target or when the manifest has engines, else python
    instances: int = 1  # instance_group count per model
    queue_delay_us: int = QUEUE_DELAY_US
    precision: str = "fp32"  # ONNX variant for the python kind
    bls: bool = True  # also write the dynpose BLS model
    ort_threads: int = 0  # intra-op threads per ONNX Runtime session in the server (0: ORT default)
    batching: bool = True  # dynamic_batching block (off: each request runs alone; for comparisons)


def _dims(shape: list[Any]) -> list[int]:
    return [-1 if not isinstance(d, int) else d for d in shape]


def _io_block(kind: str, tensors: list[Mapping[str, Any]], batched: bool) -> str:
    parts = []
    for t in tensors:
        dtype = DTYPES.get(t.get("dtype", "float32"))
        if dtype is None:
            raise InputError(
                f"tensor {t['name']!r} has dtype {t.get('dtype')!r}, which Triton has no type for",
                "manifest.json",
                f"export with one of {', '.join(DTYPES)}",
            )
        dims = _dims(list(t["shape"])[1:] if batched else list(t["shape"]))
        parts.append(f'  {{\n    name: "{t["name"]}"\n    data_type: {dtype}\n    dims: {dims}\n  }}')
    return f"{kind} [\n" + ",\n".join(parts) + "\n]\n"


def _params(params: Mapping[str, str]) -> str:
    return "".join(
        f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n' for k, v in params.items()
    )


def engine_profiles(manifest: Mapping[str, Any], role: str) -> list[Mapping[str, Any]]:
    """The built engine's profiles, else the planned ones (build_plan.sh not run yet), else none."""
    built = (manifest["models"][role].get("engine") or {}).get("profiles")
    planned = ((manifest.get("trt_plan") or {}).get("engines") or {}).get(role, {}).get("profile")
    return list(built or ([planned] if planned else []))


def batch_sizes(profiles: list[Mapping[str, Any]]) -> tuple[int, list[int], bool]:
    """(max_batch_size, preferred sizes, static) from the engine profiles, else CPU defaults.

    A static profile (min == max: a DLA engine) cannot take Triton's variable batches, so the
    model is served unbatched with that fixed N and the client pads (``static`` True).
    """
    if not profiles:
        return CPU_MAX_BATCH, [8, 16, CPU_MAX_BATCH], False
    hi = min(int(p["max"]) for p in profiles)
    if all(int(p["min"]) == int(p["max"]) for p in profiles):
        return hi, [], True
    preferred = sorted({min(int(p["opt"]), hi) for p in profiles} | {hi})
    return hi, preferred, False


def outputs_for(entry: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The role's outputs; a plan with the fused decode plugin also has keypoints + scores."""
    outs = [dict(o) for o in entry.get("outputs", [])]
    engine = entry.get("engine") or {}
    names = [t["name"] for t in engine.get("io", []) if t.get("mode") == "output"]
    if kind == "plan" and "keypoints" in names:
        k = outs[0]["shape"][1] if outs else 17
        outs += [
            {"name": "keypoints", "shape": ["N", k, 2], "dtype": "float32"},
            {"name": "keypoint_scores", "shape": ["N", k], "dtype": "float32"},
        ]
        outs = [o for o in outs if o["name"] in names]
    return outs


def model_config(
    role: str,
    entry: Mapping[str, Any],
    kind: str,
    opts: RepoOptions,
    params: Mapping[str, str],
    profiles: list[Mapping[str, Any]] = (),
) -> str:
    """config.pbtxt text for one role."""
    max_batch, preferred, static = batch_sizes(list(profiles) if kind == "plan" else [])
    inputs = entry.get("inputs") or [{"name": "input", "shape": ["N", 3, *INPUT_HW], "dtype": "float32"}]
    outputs = outputs_for(entry, kind)
    if static:  # fixed-N engine: the batch dim is part of dims, no Triton batching
        inputs = [dict(t, shape=[max_batch, *t["shape"][1:]]) for t in inputs]
        outputs = [dict(t, shape=[max_batch, *t["shape"][1:]]) for t in outputs]
    head = f'name: "{role}"\n' + (
        'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n'
        if kind == "plan"
        else 'backend: "python"\n'
    )
    text = head + f"max_batch_size: {0 if static else max_batch}\n"
    text += "version_policy: { latest { num_versions: 1 } }\n"
    text += _io_block("input", inputs, not static) + _io_block("output", outputs, not static)
    if not static and opts.batching:
        text += (
            "dynamic_batching {\n"
            + "".join(f"  preferred_batch_size: {b}\n" for b in preferred)
            + f"  max_queue_delay_microseconds: {opts.queue_delay_us}\n}}\n"
        )
    gpu_kind = "KIND_GPU" if kind == "plan" else "KIND_CPU"
    text += f"instance_group [\n  {{\n    count: {opts.instances}\n    kind: {gpu_kind}\n  }}\n]\n"
    return text + _params(params)


def ship_bls_lib(lib: Path) -> None:
    """Copy ``BLS_LIB`` into ``lib/runtime`` (each package's ``__init__`` with it, the top one
    a docstring only: runtime/__init__.py imports the whole pipeline)."""
    runtime_dir = Path(__file__).resolve().parents[1] / "runtime"
    files = [p for item in BLS_LIB for p in _py_files(runtime_dir / item)]
    for src in files:
        rel = src.relative_to(runtime_dir)
        (lib / "runtime" / rel.parent).mkdir(parents=True, exist_ok=True)
        copy_file(src, lib / "runtime" / rel)
        init = runtime_dir / rel.parent / "__init__.py"
        if rel.parent != Path(".") and not (lib / "runtime" / rel.parent / "__init__.py").exists():
            copy_file(init, lib / "runtime" / rel.parent / "__init__.py")
    atomic_write_text(
        lib / "runtime" / "__init__.py", '"""The project\'s decode code, shipped for the BLS model."""\n'
    )


def _py_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.py")) if path.is_dir() else [path]


def bls_inputs(manifest: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, int]]]:
    """role -> (the BLS input its net reads, that input's crop (H, W)): ``crops`` at the router's
    size (every box of the frame), and ``crops_<H>x<W>`` for a net of another size (RTMPose-m at
    384x288 beside a 256x192 small net), also every box: the client cuts each box once per size
    with the same windows (runtime.pose.preprocess.CropWindows) and the BLS hands each net the
    rows routed to it at its own size. Sizes from the manifest (net_input_hw), never assumed."""
    router_hw = net_input_hw(manifest, "router")
    out = {}
    for role in ("router", "small", "large"):
        hw = net_input_hw(manifest, role)
        out[role] = ("crops" if hw == router_hw else f"crops_{hw[0]}x{hw[1]}", hw)
    return out


def bls_config(manifest: Mapping[str, Any], opts: RepoOptions, params: Mapping[str, str]) -> str:
    k = 17
    inputs = dict(bls_inputs(manifest).values())  # input name -> (H, W), "crops" first
    tensors_in = [{"name": name, "shape": ["N", 3, *hw], "dtype": "float32"} for name, hw in inputs.items()]
    tensors_out = [
        {"name": "keypoints", "shape": ["N", k, 2], "dtype": "float32"},
        {"name": "keypoint_scores", "shape": ["N", k], "dtype": "float32"},
        {"name": "presence", "shape": ["N", k], "dtype": "float32"},
        {"name": "route", "shape": ["N"], "dtype": "int8"},
        {"name": "router_score", "shape": ["N"], "dtype": "float32"},
    ]
    # max_batch_size 0: one request is one frame's crops; routing is per frame, never across clients
    text = f'name: "{BLS_NAME}"\nbackend: "python"\nmax_batch_size: 0\n'
    text += "version_policy: { latest { num_versions: 1 } }\n"
    text += _io_block("input", tensors_in, False) + _io_block("output", tensors_out, False)
    text += f"instance_group [\n  {{\n    count: {opts.instances}\n    kind: KIND_CPU\n  }}\n]\n"
    return text + _params(params)


def resolve_kind(kind: str, manifest: Mapping[str, Any]) -> str:
    if kind != "auto":
        return kind
    if manifest.get("target", "cpu") != "cpu":
        return "plan"
    return (
        "plan" if any((m.get("engine") or {}).get("path") for m in manifest["models"].values()) else "python"
    )


def next_version(repo: Path, roles: list[str]) -> int:
    have = [
        int(p.name)
        for r in roles
        if (repo / r).is_dir()
        for p in (repo / r).iterdir()
        if p.is_dir() and p.name.isdigit()
    ]
    return max(have, default=0) + 1


def write_repo(artifacts: Path, repo: Path, opts: RepoOptions = RepoOptions()) -> dict[str, Any]:
    """Write (or add a version to) ``repo`` whole or not at all; returns a summary {version, kind, models, missing}."""
    load_manifest(artifacts)  # bad input is refused before anything is created
    check_options(opts, repo)
    with staged_repo(repo) as stage:
        summary = write_staged(artifacts, stage, opts)
        stage.commit()
    return summary


def check_options(opts: RepoOptions, repo: Path) -> None:
    """Flags and the repository path, checked before any work (build.engines: before the build)."""
    if opts.kind not in KINDS:
        raise InputError(
            f"unknown model kind {opts.kind!r}", "--triton-kind", f"choose one of {', '.join(KINDS)}"
        )
    if opts.instances < 1:
        raise InputError(
            f"instance count {opts.instances} is below 1", "--triton-instances", "pass 1 or more"
        )
    if repo.exists() and not repo.is_dir():
        raise InputError(
            "the Triton repository path is not a folder", str(repo), "pass a folder (new or existing)"
        )


def staged_repo(repo: Path) -> StagedDir:
    """The repository's staging folder: new files only, the old versions linked in at commit."""
    return StagedDir(repo, merge=True)


def write_staged(artifacts: Path, stage: StagedDir, opts: RepoOptions = RepoOptions()) -> dict[str, Any]:
    """Write the next version of ``stage.final`` into ``stage.path`` (commit is the caller's)."""
    repo, final = stage.path, stage.final
    manifest = load_manifest(artifacts)
    check_options(opts, final)
    kind = resolve_kind(opts.kind, manifest)
    roles = [r for r, m in manifest["models"].items() if m.get("onnx")]
    names = roles + ([BLS_NAME] if opts.bls else [])
    for name in names:  # merged by name: a file where a model folder goes would be dropped silently
        if (final / name).exists() and not (final / name).is_dir():
            raise InputError(
                f"{final / name} is not a folder, so it cannot hold the {name} model",
                str(final),
                "move that file away or choose another repository folder",
            )
    version = next_version(final, names) if final.is_dir() else 1
    missing: list[str] = []
    src_manifest = manifest_path(artifacts)
    for role in roles:
        entry = manifest["models"][role]
        vdir = repo / role / str(version)
        vdir.mkdir(parents=True)
        copy_file(src_manifest, vdir / "manifest.json")
        params = {
            "role": role,
            "onnx_sha256": entry.get("sha256", ""),
            "build_version": str(version),
            "config": manifest.get("config", ""),
        }
        if kind == "python":
            copy_file(model_file(artifacts, manifest, role, opts.precision), vdir / "model.onnx")
            copy_file(MODELS_SRC / "onnx_model.py", vdir / "model.py")
            copy_file(ORT_SESSION, vdir / ORT_SESSION.name)  # the runtime's session options
            params["intra_op_threads"] = str(opts.ort_threads)
        else:
            engine = entry.get("engine") or {}
            src = artifacts / engine["path"] if engine.get("path") else artifacts / f"{role}.engine"
            if src.is_file():
                copy_file(src, vdir / "model.plan")
            else:
                missing.append(
                    f"{role}: copy {src.name} (built on the device by build_plan.sh) to "
                    f"{stage.public(str(vdir))}/model.plan"
                )
            if engine.get("plugin_library"):
                params["plugin_library"] = str(engine["plugin_library"])
        atomic_write_text(
            repo / role / "config.pbtxt",
            model_config(role, entry, kind, opts, params, engine_profiles(manifest, role)),
        )
    if opts.bls:
        vdir = repo / BLS_NAME / str(version)
        (vdir / "dynpose_lib").mkdir(parents=True)
        copy_file(src_manifest, vdir / "manifest.json")
        copy_file(MODELS_SRC / "dynpose_bls.py", vdir / "model.py")
        ship_bls_lib(vdir / "dynpose_lib")
        params = {
            "router_model": "router",
            "small_model": "small",
            "large_model": "large",
            "build_version": str(version),
        }
        for role in (
            "router",
            "small",
            "large",
        ):  # the BLS chunks (and pads, for fixed-N engines) like the client
            mb, _, static = batch_sizes(engine_profiles(manifest, role) if kind == "plan" else [])
            params[f"{role}_batch"] = f"{mb}{'!' if static else ''}"
        for role, (name, _) in bls_inputs(manifest).items():  # which crop tensor feeds each net
            params[f"{role}_input"] = name
        atomic_write_text(repo / BLS_NAME / "config.pbtxt", bls_config(manifest, opts, params))
    summary = {
        "version": version,
        "kind": kind,
        "models": names,
        "missing": missing,
        "plugin_libraries": sorted(
            {
                str(m["engine"]["plugin_library"])
                for m in manifest["models"].values()
                if (m.get("engine") or {}).get("plugin_library")
            }
        ),
    }
    atomic_write_text(repo / "dynpose_repo.json", json.dumps(summary, indent=2) + "\n")
    return summary


def add_triton_arguments(p: argparse.ArgumentParser, with_repo: bool = False) -> None:
    """The flags build.engines shares with this module's own CLI (``with_repo``: also --triton-repo)."""
    g = p.add_argument_group("Triton model repository (docs/triton.md)")
    if with_repo:
        g.add_argument(
            "--triton-repo",
            type=output_dir,
            default=None,
            help="also write (or add a version to) this Triton model repository",
        )
    g.add_argument(
        "--triton-kind",
        choices=KINDS,
        default="auto",
        help="python: ONNX Runtime in Triton's python backend (any CPU); plan: tensorrt_plan "
        "models from the engines; auto: plan for GPU targets or when the manifest has engines",
    )
    g.add_argument("--triton-instances", type=positive_int, default=1, help="instance_group count per model")
    g.add_argument(
        "--triton-queue-delay-us",
        type=nonneg_int,
        default=QUEUE_DELAY_US,
        help="dynamic batching max_queue_delay_microseconds",
    )
    g.add_argument("--no-triton-bls", action="store_true", help="skip the dynpose BLS model")
    g.add_argument(
        "--no-triton-batching",
        action="store_true",
        help="no dynamic_batching block (every request runs alone; for comparisons)",
    )


def options_from_args(args: argparse.Namespace, precision: str = "fp32") -> RepoOptions:
    return RepoOptions(
        kind=args.triton_kind,
        instances=args.triton_instances,
        queue_delay_us=args.triton_queue_delay_us,
        precision=precision,
        bls=not args.no_triton_bls,
        batching=not args.no_triton_batching,
    )


def build_stage(out_dir: Path, args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """build.engines' last stage, when --triton-repo asks: the repository from the staged folder
    ``out_dir``, staged too; yields (stage, summary) or None. The caller commits the
    stage together with the artifacts (build.staging.commit_together)."""
    if getattr(args, "triton_repo", None) is None:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def staged():
        with staged_repo(args.triton_repo) as stage:
            yield stage, write_staged(out_dir, stage, options_from_args(args))

    return staged()


def print_summary(repo: Path, summary: Mapping[str, Any]) -> None:
    print(
        f"triton repository: {repo} (version {summary['version']}, {summary['kind']} models: "
        f"{', '.join(summary['models'])})"
    )
    for m in summary["missing"]:
        print(f"  missing: {m}")
    for lib in summary["plugin_libraries"]:
        print(
            f"  plugin: start tritonserver with LD_PRELOAD={lib} "
            f'(or --backend-config=tensorrt,plugins="{lib}")'
        )


def _main(argv: list[str]) -> int:
    p = OneLineParser(prog="python -m build.triton_repo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--engines",
        required=True,
        type=Path,  # write_repo reads (and checks) its manifest first
        help="artifacts folder with manifest.json",
    )
    p.add_argument(
        "--out", required=True, type=output_dir, help="model repository folder (created or added to)"
    )
    p.add_argument(
        "--precision",
        default="fp32",
        type=run_precision,
        help="ONNX variant for python models: fp32, fp16, int8 (= int8_cpu) or a variant name",
    )
    add_triton_arguments(p)
    args = p.parse_args(argv)
    summary = write_repo(args.engines, args.out, options_from_args(args, args.precision))
    print_summary(args.out, summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes as runtime.errors documents them (2: bad artifacts or flags)."""
    return guarded(_main, argv, "python -m build.triton_repo")


if __name__ == "__main__":
    raise SystemExit(main())
