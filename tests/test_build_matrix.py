"""Every registered config builds for every target, fp32 and int8 (issue 25 item 2).

Why: dyn-r50-h32 stopped building for Orin (ONNX Runtime's quantizer crashed on its
ResNet-50 deconvolution in the int8_trt flavour) and nothing noticed, because no test
built a real-architecture config for a TensorRT target. Here the build CLI's main() builds
each config from ``--list-configs`` for ``--target cpu`` and ``--target orin`` at fp32 and int8
with random (or the fixtures' bundled) weights and a tiny synthetic calibration set; the
point is that the build finishes and leaves a valid folder, not speed or accuracy.

Marker ``build_matrix``: its own CI step (tools/test.sh); one export per config serves its
four builds (:class:`ExportOnce`). Marker ``canary``: the int8 Orin builds again, each with its
own export, run by tools/deps_canary.sh in a throwaway venv with the newest onnxruntime /
onnx / onnxsim / onnxslim beyond the pins of pyproject.toml (not in CI; weekly schedule).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from build.configs import list_configs
from build.synth.coco import write_dataset
from calib.quantize import check_trt_qdq
from runtime.artifacts.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("orin", "cpu")  # orin + int8 first: the command exports each config
PRECISIONS = ("int8", "fp32")
CALIB_SCENES = 2  # synthetic images: ~7 people, so routing, report and presence stay cheap
CALIB_MAX_CROPS = 4  # INT8 ranges from 4 crops: enough to exercise every quantizer path


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory) -> Path:
    """A COCO calibration folder (images, person_keypoints.json, person_detections.json) of
    synthetic scenes on synthetic backgrounds: nothing from ../shared is copied."""
    d = tmp_path_factory.mktemp("tiny_coco")
    paths = write_dataset(d, CALIB_SCENES, seed=7, photos=[])
    gt = json.loads(paths["keypoints"].read_text())
    for im in gt["images"]:  # the synthetic writer keeps images in images/; COCO names are folder-relative
        im["file_name"] = f"images/{im['file_name']}"
    paths["keypoints"].write_text(json.dumps(gt))
    (d / "person_detections.json").write_text(paths["detections"].read_text())
    return d


class ExportOnce:
    """``build.artifacts.export_all`` run for real once per config, then reused.

    Why: the export (torch -> ONNX, onnxsim, parity at batch 1 and 7) depends on the config,
    weights, seed, opset and simplify flag only, never on --target or --precision, and it is
    most of a build's time for the large nets. The first build of a config exports; the other
    three of its row get the same files (byte-identical to a re-export: seeded weights) and
    the same manifest entries, and run everything after the export for real.
    """

    def __init__(self, real) -> None:
        self.real = real
        self.done: dict[tuple, tuple[Path, dict, dict]] = {}

    def __call__(
        self, cfg, out_dir: Path, ckpts, seed=0, opset=17, simplify=True, progress=lambda s: None, trust=False
    ):
        key = (cfg.name, tuple(sorted(ckpts.items())), seed, opset, simplify, trust)
        if key not in self.done:
            entries, nets = self.real(cfg, out_dir, ckpts, seed, opset, simplify, progress, trust)
            keep = Path(tempfile.mkdtemp(prefix=f"export-{cfg.name}-"))
            for e in entries.values():
                shutil.copy2(out_dir / e["onnx"], keep / e["onnx"])
            self.done[key] = keep, entries, nets
            return copy.deepcopy(entries), nets
        keep, entries, nets = self.done[key]
        for e in entries.values():  # the progress bar counts two steps a role
            progress(f"{e['role']}: weights (export reused)")
            progress(f"{e['role']}: export reused")
            shutil.copy2(keep / e["onnx"], out_dir / e["onnx"])
        return copy.deepcopy(entries), nets


@pytest.fixture(scope="module")
def export_once():
    import build.artifacts

    once = ExportOnce(build.artifacts.export_all)
    mp = pytest.MonkeyPatch()
    mp.setattr(build.artifacts, "export_all", once)  # build.engines looks it up at each build
    yield once
    mp.undo()
    for keep, _, _ in once.done.values():
        shutil.rmtree(keep, ignore_errors=True)


def build(out: Path, config: str, target: str, precision: str, calib: Path) -> Path:
    """The build CLI's main in this process: its exit code, and a crash's own traceback in the log."""
    from build.engines import main

    argv = [
        "--config",
        config,
        "--target",
        target,
        "--precision",
        precision,
        "--out",
        str(out),
        "--calib-data",
        str(calib),
        "--calib-boxes",
        "gt",
        "--calib-max-crops",
        str(CALIB_MAX_CROPS),
        "--calib-method",
        "minmax",
    ]
    assert main(argv) == 0, " ".join(argv)
    return out / f"{config}-{target}"


def check_folder(root: Path, target: str, precision: str) -> dict:
    """The folder is what the runtime and the device need: a manifest whose every file matches its
    hash, the variants the precision promises, and for TensorRT targets a plan that names them."""
    m = load_manifest(root, verify=True)
    want = {"fp32": set(), "int8": {"int8_cpu"} | ({"int8_trt"} if target != "cpu" else set())}[precision]
    for role, entry in m["models"].items():
        # a config's own detector (the fixture configs') makes its variants whatever the pose
        # precision (--det-precision all, the default; docs/detector.md)
        role_want = {"fp16", "int8_cpu", "int8_trt"} if role == "detector" else want
        assert set(entry.get("variants", {})) == role_want, (role, entry.get("variants"))
    assert m["calibration"]["precision"] == precision and set(m["calibration"]["variants"]) == want
    if target == "cpu":
        assert not (root / "build_plan.sh").exists() and "trt_plan" not in m
        return m
    plan = root / "build_plan.sh"
    assert subprocess.run(["bash", "-n", str(plan)], capture_output=True).returncode == 0
    text = plan.read_text()
    for role, eng in m["trt_plan"]["engines"].items():
        onnx_name = eng["onnx"]
        assert (root / onnx_name).is_file() and f"--onnx={onnx_name}" in text, (role, onnx_name)
        if precision == "int8":  # the engine is built from the TensorRT flavour, and it passes the check
            assert re.fullmatch(rf"{role}\.int8_trt\.onnx", onnx_name), onnx_name
            import onnx

            assert check_trt_qdq(onnx.load(str(root / onnx_name))) == []
    return m


MATRIX = [
    pytest.param(c, t, p, id=f"{c}-{t}-{p}") for c in list_configs() for t in TARGETS for p in PRECISIONS
]


@pytest.mark.build_matrix
@pytest.mark.parametrize("config,target,precision", MATRIX)
def test_config_builds(config, target, precision, tiny_coco, export_once, tmp_path) -> None:
    check_folder(build(tmp_path, config, target, precision, tiny_coco), target, precision)


@pytest.mark.canary
@pytest.mark.parametrize("config", list_configs())
def test_newest_dependencies_build_int8_for_orin(config, tiny_coco, tmp_path) -> None:
    """The canary: int8 for a TensorRT target makes both INT8 flavours (the quantizer's whole
    surface) after the exporter and simplifier; tools/deps_canary.sh runs it with the newest
    releases installed and names them."""
    check_folder(build(tmp_path, config, "orin", "int8", tiny_coco), "orin", "int8")
