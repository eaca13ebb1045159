"""``pip install .`` with no extras (issue 27): a device that only runs built artifacts gets the
runtime and no build stack. A clean venv, a real ``pip install`` of this checkout (PyPI or pip's
cache), then ``runtime.images`` and ``runtime.video`` run from outside the repository on artifacts
built beforehand with the dev environment. Its own CI step (marker ``install``): it downloads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_STACK = ("torch", "onnx", "onnxsim", "onnxslim", "scipy", "pycocotools", "motmetrics", "matplotlib")

pytestmark = pytest.mark.install


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install <this checkout>`` and nothing else; returns its python."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "v")], check=True, timeout=120)
    py = root / "v" / "bin" / "python"
    t = time.perf_counter()
    r = _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)], root)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"\npip install . (no extras) in a clean venv: {time.perf_counter() - t:.0f} s")
    return py


def test_core_install_has_no_build_stack_and_ships_package_data(core_venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util as u, json, pathlib, runtime, build, tools, bench, kernels\n"
        f"missing = [m for m in {BUILD_STACK!r} if u.find_spec(m) is None]\n"
        "site = pathlib.Path(runtime.__file__).parents[1]\n"
        "files = ['build/fixtures/small.pth', 'build/fixtures/report.json', 'kernels/dynpose_kernels.cu',"
        " 'kernels/plugin/decode_plugin.cpp', 'bench/baseline.json', 'tools/device_check/__main__.py',"
        " 'tools/triton_server.py', 'tools/setup_triton.sh', 'runtime/heads/rowmath.cpp']\n"
        "from runtime.heads import native\n"
        "print(json.dumps({'missing': missing, 'site': str(site), 'native': native.status(),"
        " 'absent': [f for f in files if not (site / f).is_file()]}))\n"
    )
    r = _run([str(core_venv), "-c", code], tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["missing"] == list(BUILD_STACK), (
        f"the core install pulled in {set(BUILD_STACK) - set(got['missing'])}"
    )
    assert got["site"].startswith(str(core_venv.parents[1])) and got["absent"] == []
    # pip built the CPU path's C++ and it matches the rowmath.cpp shipped beside it
    assert got["native"].startswith("native (_rowmath"), got["native"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s synthetic clip with its ground truth and boxes, drawn by the dev environment."""
    d = tmp_path_factory.mktemp("clip")
    r = subprocess.run(
        [sys.executable, "-m", "build.synth", "--video", str(d), "--seconds", "1", "--people", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return d


def test_core_install_runs_images_and_video(
    core_venv: Path, cpu_artifacts: Path, coco_mini: Path, clip: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"  # outside the repository: the installed packages run
    work.mkdir()
    r = _run(
        [
            str(core_venv),
            "-m",
            "runtime.images",
            "--engines",
            str(cpu_artifacts),
            "--images",
            str(coco_mini),
            "--dets",
            str(coco_mini / "person_detections.json"),
            "--out",
            "res.json",
        ],
        work,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads((work / "res.json").read_text())) == 118
    r = _run(
        [
            str(core_venv),
            "-m",
            "runtime.video",
            "--engines",
            str(cpu_artifacts),
            "--source",
            str(clip / "synth.mp4"),
            "--detector",
            f"json:{clip / 'detections.json'}",
            "--smooth",
            "--draw-regions",
            "--out",
            "out/",
        ],
        work,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    frames = (work / "out" / "synth.jsonl").read_text().splitlines()
    assert len(frames) == 25 and (work / "out" / "synth.overlay.avi").stat().st_size > 0


@pytest.mark.parametrize(
    "argv,package,extra",
    [
        (("build.engines", "--target", "cpu"), "onnx", "build"),  # module-level import
        (
            ("bench.video_eval", "--gt", "{clip}/person_keypoints.json", "--jsonl", "x.jsonl"),
            "pycocotools|motmetrics",  # whichever of the extra's packages the command imports first
            "eval",
        ),  # lazy import, under guarded()
    ],
    ids=["build", "eval"],
)
def test_a_command_of_a_missing_extra_names_it_in_one_line(
    core_venv: Path, clip: Path, tmp_path: Path, argv: tuple, package: str, extra: str
) -> None:
    (tmp_path / "x.jsonl").write_text('{"frame": 0, "persons": []}\n')  # a valid run with nobody in it
    r = _run([str(core_venv), "-m", *(a.format(clip=clip) for a in argv)], tmp_path)
    assert r.returncode == 3 and r.stdout == "", r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.fullmatch(
        rf"error: python package ({package}) is not installed \(the {extra} extra\): "
        rf"pip install 'dynpose-trt\[{extra}\]' \(in a clone: pip install -e '\.\[{extra}\]'\)",
        lines[0],
    ), r.stderr


def test_an_installed_command_names_the_installed_setup_script(core_venv: Path, tmp_path: Path) -> None:
    """runtime.backends.triton tells users to run tools.triton_server; from an install, its own
    hint must name the script that was installed with it, not a repository path."""
    (tmp_path / "m").mkdir()  # a repository with a model, so the missing venv is what is left to say
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\n')
    r = _run([str(core_venv), "-m", "tools.triton_server", "--repo", str(tmp_path)], tmp_path, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: no Triton server venv"), (
        r.stderr
    )
    script = lines[0].split("run `bash ", 1)[1].split("`", 1)[0]
    assert script.startswith(str(core_venv.parents[1])) and Path(script).is_file(), script


def test_an_installed_plugin_build_says_it_needs_a_clone(core_venv: Path, tmp_path: Path) -> None:
    """The kernels' sources ship (package data), the CMake project does not: say so, before CMake."""
    r = _run(
        [str(core_venv), "-c", "from kernels.plugin_build import build_plugin_lib; build_plugin_lib('.')"],
        tmp_path,
    )
    assert r.returncode == 1 and "CMakeLists.txt, absent at" in r.stderr and "run from a clone" in r.stderr, (
        r.stderr
    )
