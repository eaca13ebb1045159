"""Build targets and the per-engine build specs derived from an artifacts dir.

A target is a device class (its memory, DLA cores, sensible batch limits);
an :class:`EngineSpec` is one concrete engine to build for it. Both the Python
builder and ``build_plan.sh`` consume the same specs, so the two paths cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import onnx.defs

from runtime.pose.preprocess import INPUT_HW, net_input_hw

INPUT_CHW = (3, *INPUT_HW)  # only where a net lists no input shape; each spec takes its net's
ROLES = ("router", "small", "large")
# ONNX domains TensorRT's parser implements natively; any other node is a plugin.
STANDARD_DOMAINS = {"", "ai.onnx"}


@dataclass(frozen=True)
class Target:
    """What differs between devices: memory, DLA, default batch limits."""

    name: str
    workspace_mb: int  # builder WORKSPACE pool: Orin's GPU shares DRAM with the CPU
    max_batch_router: int
    max_batch_pose: int
    opt_batch_router: int
    opt_batch_pose: int
    dla_router: bool  # place the router on DLA when the device has cores
    opt_level: int = 3  # TensorRT default; 4-5 build far slower for little gain here
    builds_engines: bool = True
    description: str = ""


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "orin",
            workspace_mb=2048,
            max_batch_router=128,
            max_batch_pose=64,
            opt_batch_router=32,
            opt_batch_pose=16,
            dla_router=True,
            description="Jetson AGX Orin / Orin NX (SM 8.7, 2 DLA cores, JetPack 6.x + TensorRT 10.3)",
        ),
        # Orin Nano: 4-8 GB shared by CPU and GPU and no DLA: smaller pool and pose batch.
        Target(
            "orin-nano",
            workspace_mb=768,
            max_batch_router=128,
            max_batch_pose=32,
            opt_batch_router=32,
            opt_batch_pose=8,
            dla_router=False,
            description="Jetson Orin Nano (SM 8.7, no DLA, 4-8 GB shared memory)",
        ),
        Target(
            "x86-gpu",
            workspace_mb=4096,
            max_batch_router=128,
            max_batch_pose=64,
            opt_batch_router=32,
            opt_batch_pose=16,
            dla_router=False,
            description="discrete NVIDIA GPU with TensorRT >= 10.3",
        ),
        Target(
            "cpu",
            workspace_mb=0,
            max_batch_router=0,
            max_batch_pose=0,
            opt_batch_router=0,
            opt_batch_pose=0,
            dla_router=False,
            builds_engines=False,
            description="no engines: ONNX Runtime runs the ONNX files",
        ),
    )
}


@dataclass(frozen=True)
class Profile:
    min: int
    opt: int
    max: int

    def shapes(self, chw: tuple[int, ...] = INPUT_CHW) -> tuple[tuple[int, ...], ...]:
        return tuple((b, *chw) for b in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class BuildOptions:
    """User overrides of a target's defaults (CLI flags map 1:1 onto these)."""

    max_batch_router: int | None = None
    max_batch_pose: int | None = None
    dla: str = "auto"  # auto | off | 0 | 1 (core index)
    dla_batch: int | None = None  # static router batch on DLA (default: router opt)
    workspace_mb: int | None = None
    opt_level: int | None = None
    timing_cache: str | None = None  # path; default <out>/timing-cache/<trt>-<sm>.cache
    plugin_lib: str | None = None
    precision: str = "auto"  # auto | int8 | fp16 | fp32
    require_trt: bool = False


@dataclass
class EngineSpec:
    """One engine to build: which ONNX, which precision and profile, where it runs."""

    role: str
    onnx: Path
    precision: str
    profile: Profile
    engine: Path
    input_name: str = "input"
    dla_core: int | None = None  # None = GPU; the builder clears it when the device has no DLA
    workspace_mb: int = 1024
    opt_level: int = 3
    plugin_lib: str | None = None
    plugin_ops: list[str] = field(default_factory=list)
    gpu_profile: Profile | None = None  # the dynamic profile to fall back to when DLA is unavailable
    fallback_onnx: Path | None = None  # an int8 spec: the FP16 (else fp32) ONNX built if INT8 fails
    fallback_precision: str | None = None
    input_chw: tuple[int, ...] = INPUT_CHW  # the detector's is (3, S, S)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["onnx"], d["engine"] = self.onnx.name, self.engine.name
        d["fallback_onnx"] = self.fallback_onnx.name if self.fallback_onnx else None
        return d


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise SystemExit(f"error: unknown --target {name!r}; choose one of: {', '.join(TARGETS)}") from None


def plugin_ops(onnx_path: Path) -> list[str]:
    """Op types TensorRT cannot parse natively (custom domain or unknown op), i.e. plugin nodes."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    found = set()
    for node in model.graph.node:
        if node.domain not in STANDARD_DOMAINS or not onnx.defs.has(node.op_type, node.domain or ""):
            found.add(f"{node.domain or 'ai.onnx'}::{node.op_type}")
    return sorted(found)


def _precision_candidates(root: Path, role: str, entry: Mapping[str, Any]) -> dict[str, Path]:
    variants = entry.get("variants", {}) or {}
    return {
        "int8": root / variants.get("int8_trt", {}).get("onnx", f"{role}.int8_trt.onnx"),
        "fp16": root / variants.get("fp16", {}).get("onnx", f"{role}.fp16.onnx"),
        "fp32": root / entry.get("onnx", f"{role}.onnx"),
    }


# precision -> the variant name of its ONNX in the manifest ("plugin" is the fp32 fused decode)
PLUGIN_VARIANT = {"fp32": "plugin", "fp16": "plugin_fp16", "int8": "plugin_int8_trt"}


def plugin_variant(
    root: Path, role: str, entry: dict[str, Any], onnx_path: Path, precision: str, regions: Any = None
) -> Path:
    """The fused-decode ONNX of ``precision``: the manifest's variant, else derived now.
    ``regions`` (build.plugin_nodes.RegionSpec) adds the credible-region outputs; a variant made
    for other regions (or none) is derived again.

    The exporter writes ``<role>.plugin.onnx`` from the fp32 net only; fusing the decode must
    not cost the INT8/FP16 backbone, so the INT8/FP16 ONNX gets the same DynPoseDecode node
    (``<role>.plugin.int8_trt.onnx`` / ``<role>.plugin.fp16.onnx``), recorded as a variant.
    """
    variants = entry.setdefault("variants", {})
    name = PLUGIN_VARIANT[precision]
    wanted = regions.to_json() if regions is not None else None
    if (
        name in variants
        and (root / variants[name]["onnx"]).is_file()
        and variants[name].get("regions") == wanted
    ):
        return root / variants[name]["onnx"]
    from build.plugin_nodes import add_decode_plugin

    fused = add_decode_plugin(onnx.load(str(onnx_path)), entry["head"], regions=regions)
    path = root / f"{role}.{name.replace('_', '.', 1)}.onnx"
    onnx.save(fused, str(path))
    variants[name] = {
        "onnx": path.name,
        "from": onnx_path.name,
        "plugin_library": variants.get("plugin", {}).get("plugin_library", "libdynpose_plugins.so"),
        "outputs": [o.name for o in fused.graph.output],
        **({"regions": wanted} if wanted else {}),
    }
    return path


def choose_onnx(
    root: Path,
    role: str,
    entry: Mapping[str, Any],
    precision: str,
    use_plugin: bool = False,
    regions: Any = None,
) -> tuple[Path, str]:
    """INT8 Q/DQ where calibration produced one, else the FP16 ONNX, else fp32.

    Strongly typed builds take precision from the ONNX tensor types, so the
    precision choice *is* the choice of file. With a plugin library given and a
    pose net exported with its fused decode (``plugin`` variant), the fused-decode
    ONNX of the chosen precision is built (:func:`plugin_variant`).
    """
    variants = entry.get("variants", {}) or {}
    candidates = _precision_candidates(root, role, entry)
    order = ["int8", "fp16", "fp32"] if precision == "auto" else [precision]
    for p in order:
        if candidates[p].is_file():
            if (
                use_plugin
                and "plugin" in variants
                and isinstance(entry, dict)
                and not plugin_ops(candidates[p])
            ):
                return plugin_variant(root, role, entry, candidates[p], p, regions), p
            return candidates[p], p
    hint = {
        "int8": "run the INT8 calibration (calib/) first",
        "fp16": "run the FP16 conversion (calib/) first",
    }.get(precision, "run the export first")
    raise SystemExit(
        f"error: {role}: no ONNX for precision {precision!r} in {root} "
        f"(looked for {', '.join(str(candidates[p].name) for p in order)}); {hint}"
    )


def _fallback(
    root: Path, role: str, entry: Mapping[str, Any], use_plugin: bool, regions: Any = None
) -> tuple[Path | None, str | None]:
    """What an int8 engine falls back to when TensorRT cannot build it: FP16, else fp32."""
    for p in ("fp16", "fp32"):
        try:
            return choose_onnx(root, role, entry, p, use_plugin, regions)
        except SystemExit:
            continue
    return None, None


def int8_fallback(spec: EngineSpec) -> EngineSpec:
    """The same engine from its fallback ONNX (DLA kept for FP16; fp32 cannot run on DLA)."""
    fb = replace(
        spec,
        onnx=spec.fallback_onnx,
        precision=spec.fallback_precision,
        plugin_ops=plugin_ops(spec.fallback_onnx),
        fallback_onnx=None,
        fallback_precision=None,
    )
    return without_dla(fb) if fb.precision == "fp32" else fb


def _plugin_regions(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> Any:
    """Credible regions the fused decode computes for a probability-map net (the default masses
    under the manifest's coverage calibration), so its maps need not leave the device."""
    from build.plugin_nodes import region_spec
    from runtime.heads.registry import PROBMAP

    if entry.get("head") != PROBMAP:  # the double head picks outer regions on the host: maps needed
        return None

    return region_spec(manifest)


def _dla_core(target: Target, opts: BuildOptions) -> int | None:
    if opts.dla == "off":
        return None
    if opts.dla == "auto":
        return 0 if target.dla_router else None
    try:
        return int(opts.dla)
    except ValueError:
        raise SystemExit(f"error: --dla must be auto, off or a core index, got {opts.dla!r}") from None


def engine_specs(
    root: Path, manifest: Mapping[str, Any], target: Target, opts: BuildOptions = BuildOptions()
) -> list[EngineSpec]:
    """The engines to build for ``target`` from the models in ``manifest``."""
    if not target.builds_engines:
        return []
    models = manifest.get("models", {})
    missing = [r for r in ROLES if r not in models]
    if missing:
        raise SystemExit(f"error: manifest in {root} lacks models {missing}; run the export first")
    specs = []
    for role in ROLES:
        entry = models[role]
        regions = _plugin_regions(manifest, entry)
        onnx_path, precision = choose_onnx(root, role, entry, opts.precision, bool(opts.plugin_lib), regions)
        is_router = role == "router"
        max_b = (
            (opts.max_batch_router or target.max_batch_router)
            if is_router
            else (opts.max_batch_pose or target.max_batch_pose)
        )
        opt_b = min(target.opt_batch_router if is_router else target.opt_batch_pose, max_b)
        if max_b < 1:
            raise SystemExit(f"error: max batch for {role} must be >= 1, got {max_b}")
        dla = _dla_core(target, opts) if is_router else None
        if dla is not None and precision == "fp32":
            dla = None  # DLA computes only FP16/INT8; an fp32 network would fall back entirely
        gpu_profile = Profile(1, opt_b, max_b)
        profile = gpu_profile
        if dla is not None:
            static = min(opts.dla_batch or opt_b, max_b)
            profile = Profile(static, static, static)  # DLA needs static shapes
        ops = plugin_ops(onnx_path)
        fb_onnx, fb_precision = (
            _fallback(root, role, entry, bool(opts.plugin_lib), regions)
            if precision == "int8" and opts.precision == "auto"
            else (None, None)
        )
        specs.append(
            EngineSpec(
                role=role,
                onnx=onnx_path,
                precision=precision,
                profile=profile,
                engine=root / f"{role}.engine",
                input_name=(entry.get("inputs") or [{"name": "input"}])[0]["name"],
                dla_core=dla,
                workspace_mb=opts.workspace_mb or target.workspace_mb,
                opt_level=target.opt_level if opts.opt_level is None else opts.opt_level,
                plugin_lib=str(Path(opts.plugin_lib).resolve()) if ops and opts.plugin_lib else None,
                plugin_ops=ops,
                gpu_profile=gpu_profile if dla is not None else None,
                fallback_onnx=fb_onnx,
                fallback_precision=fb_precision,
                input_chw=(3, *net_input_hw(manifest, role)),
            )
        )
    if "detector" in models:  # optional role (build.detector): GPU, batch 1..max_batch for several cameras
        specs.append(detector_spec(root, models["detector"], target, opts))
    return specs


def detector_spec(root: Path, entry: Mapping[str, Any], target: Target, opts: BuildOptions) -> EngineSpec:
    onnx_path, precision = choose_onnx(root, "detector", entry, opts.precision)
    max_b = max(1, int(entry.get("max_batch", 4)))
    h, w = entry["input_hw"]
    return EngineSpec(
        role="detector",
        onnx=onnx_path,
        precision=precision,
        profile=Profile(1, 1, max_b),
        engine=root / "detector.engine",
        input_name=entry["inputs"][0]["name"],
        workspace_mb=opts.workspace_mb or target.workspace_mb,
        opt_level=target.opt_level if opts.opt_level is None else opts.opt_level,
        plugin_ops=plugin_ops(onnx_path),
        input_chw=(3, int(h), int(w)),
    )


def without_dla(spec: EngineSpec) -> EngineSpec:
    """The same engine on the GPU with a dynamic profile (device has no DLA / DLA build failed)."""
    if spec.dla_core is None:
        return spec
    return replace(spec, dla_core=None, profile=spec.gpu_profile or spec.profile, gpu_profile=None)
