"""A clone with nothing beside it (issue 27): the README's main job runs to its score table, and
the test command stops in one line naming the data from outside the repository it needs.

The clone is ``git clone`` of this checkout's HEAD into a temporary folder, so no ``../shared``
lies beside it; the commands run with the current interpreter and PYTHONPATH at the clone (the
README's ``pip install`` part is what tests/test_install.py proves).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_main_job() -> tuple[tuple[str, ...], ...]:
    """The README's first set-up command without its install part, one argv per ``&&`` step
    (read from the README itself, so the two cannot drift apart)."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(pip install [^\n]+)\n```", readme)
    assert first, "README has no ```bash block starting with pip install"
    steps = [shlex.split(part) for part in first.group(1).split("&&")]
    assert steps[0][:2] == ["pip", "install"], steps[0]
    assert all(st[:2] == ["python", "-m"] for st in steps[1:]), steps
    return tuple(tuple(st[2:]) for st in steps[1:])


MAIN_JOB = readme_main_job()


@pytest.fixture(scope="module")
def bare_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("bare") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone.parent / "shared").exists()
    return clone


def _env(clone: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DYNPOSE_SHARED_DATA"}  # nothing beside the clone
    return {**env, "PYTHONPATH": str(clone), **extra}


@pytest.mark.slow
def test_main_job_runs_from_a_bare_clone_to_its_score_table(bare_clone: Path) -> None:
    for step in MAIN_JOB:
        r = subprocess.run(
            [sys.executable, "-m", *step],
            cwd=bare_clone,
            env=_env(bare_clone),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, f"{step[0]} exit {r.returncode}: {r.stderr[-1500:]}"
    table = r.stdout.splitlines()
    assert table[0].startswith("| run | coverage | AP | box AP | IDF1 | MOTA"), r.stdout
    assert table[2].split("|")[2].strip() == "100%", r.stdout  # the whole clip was scored
    assert table[2].startswith("| synth | "), r.stdout
    # the fixtures calibrated on their own synthetic split, and the manifest says so
    m = json.loads((bare_clone / "artifacts" / "fixture-dyn-cpu" / "manifest.json").read_text())
    assert m["calib_data"]["origin"] == "synthetic" and "generated backdrops" in m["calib_data"]["backdrops"]
    assert m["routing"]["source"].startswith("synthetic scenes (build.synth calib split, seed 0, 200 images")


def test_test_command_stops_in_one_line_naming_the_missing_data(bare_clone: Path) -> None:
    # PYTHON=false: should the check ever let it through, the install step fails at once
    # instead of re-pointing this environment's packages at the temporary clone.
    r = subprocess.run(
        ["bash", "tools/test.sh"],
        cwd=bare_clone,
        env=_env(bare_clone, PYTHON="false"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stdout + r.stderr
    line = lines[0]
    assert line.startswith("error: test data missing: ")
    for needed in (
        str(bare_clone.parent / "shared" / "data") + "/",
        "third_party/tensorrt/10.3.0/include",
        "DYNPOSE_SHARED_DATA",
        "COCO val2017",
        "open-mmlab/mmpose",
        "YOLO11n-pose",
        "NVIDIA/TensorRT",
    ):
        assert needed in line, needed


def test_test_data_check_names_each_missing_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "coco-mini").mkdir(parents=True)
    (data / "coco-mini" / "person_keypoints.json").write_text("{}")
    r = subprocess.run(
        ["bash", "tests/setup/check_test_data.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DYNPOSE_SHARED_DATA": str(data)},
        timeout=30,
    )
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{data}/coco-mini/person_detections.json" in r.stderr and f"{data}/video/people.mp4" in r.stderr
    assert "person_keypoints.json" not in r.stderr.split("(")[0]


def test_test_data_check_passes_with_the_data_beside_the_repo() -> None:
    r = subprocess.run(
        ["bash", "tests/setup/check_test_data.sh"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0 and r.stdout == r.stderr == "", r.stderr


@pytest.mark.parametrize(
    "argv,flag",
    [
        (("--config", "dyn-r50-h32"), "--calib-data"),  # real architectures: real people
        (("--small-ckpt", "build/fixtures/small.pth"), "--calib-data"),  # a user's weights are real nets
        (("--detector", "build/fixtures/report.json"), "--det-calib-data"),  # a detector calibrates on photos
    ],
    ids=["real-config", "fixture-with-user-ckpt", "detector"],
)
def test_bare_clone_refuses_a_missing_photo_default_before_exporting(
    bare_clone: Path, tmp_path: Path, argv: tuple, flag: str
) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "build.engines", "--target", "cpu", "--out", str(out), *argv],
        cwd=bare_clone,
        env=_env(bare_clone),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert (
        lines[0].startswith("error: ")
        and f"({flag})" in lines[0]
        and "shared/data/coco-mini is absent" in lines[0]
    )
    assert not out.exists() or not any(out.rglob("*.onnx"))  # refused before any export
