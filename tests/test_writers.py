"""Every writer is transactional: a failed rewrite keeps the previous output, and says which file it wrote.

Full disks for real: a child under RLIMIT_FSIZE (writes fail with EFBIG, as in test_disk_full) or,
where one file system must fill while another does not (artifacts on disk, the Triton repository
on a small one), a tmpfs of a few hundred KiB mounted in a private mount namespace (``unshare -rm``:
no root needed, nothing outside the child sees it; the child copies the tmpfs out before it exits).
Each case checks the previous output bit for bit, the exit code 4 and the one error line naming
the file being written under its final name (not a source file, not a hidden staging path).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from failcheck import REPO, assert_one_line_failure, run_module
from google.protobuf import text_format
from test_disk_full import _limit
from tritonclient.grpc import model_config_pb2 as mc

from runtime.artifacts.manifest import sha256_file
from runtime.errors import EXIT_OUTPUT, OutputError

IN = [{"name": "input", "shape": ["N", 3, 256, 192], "dtype": "float32"}]
OUT = {
    "router": [{"name": "score", "shape": ["N", 1], "dtype": "float32"}],
    "small": [{"name": "heatmaps", "shape": ["N", 17, 64, 48], "dtype": "float32"}],
    "large": [{"name": "probmaps", "shape": ["N", 17, 64, 48], "dtype": "float32"}],
}


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by sha256, links by target, folders by name."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(d) / name
            rel = str(p.relative_to(root))
            out[rel] = (
                "-> " + os.readlink(p)
                if p.is_symlink()
                else "dir"
                if p.is_dir()
                else hashlib.sha256(p.read_bytes()).hexdigest()
            )
    return out


def fake_cpu_artifacts(d: Path, nbytes: int = 200_000) -> Path:
    """A CPU-target manifest whose three 'ONNX' files are ``nbytes`` each (only hashed here)."""
    d.mkdir(parents=True)
    models = {}
    for role, head in (("router", "score"), ("small", "heatmap"), ("large", "probmap")):
        (d / f"{role}.onnx").write_bytes(os.urandom(nbytes))
        models[role] = {
            "role": role,
            "head": head,
            "onnx": f"{role}.onnx",
            "sha256": sha256_file(d / f"{role}.onnx"),
            "inputs": IN,
            "outputs": OUT[role],
        }
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "config": "dyn-r50-h32",
                "target": "cpu",
                "models": models,
                "routing": {"k1": 0.3, "k2": 0.6},
            }
        )
    )
    return d


def parses_as_triton_repo(repo: Path) -> None:
    for cfg in repo.glob("*/config.pbtxt"):
        c = text_format.Parse(cfg.read_text(), mc.ModelConfig())
        assert c.name == cfg.parent.name
        versions = [p for p in cfg.parent.iterdir() if p.is_dir() and p.name.isdigit()]
        assert versions and all((v / "model.py").is_file() for v in versions)


def in_small_fs(
    tmp_path: Path, size_kb: int, seed: Path | None, command: list[str], timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``command`` with a ``size_kb`` tmpfs at tmp_path/small (pre-filled with a copy of ``seed``
    as small/<seed name>); afterwards tmp_path/after holds what the tmpfs held."""
    mnt, after = tmp_path / "small", tmp_path / "after"
    mnt.mkdir()
    script = f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(mnt))} || exit 99\n"
    if seed is not None:
        script += f"cp -a {shlex.quote(str(seed))} {shlex.quote(str(mnt))}/\n"
    script += (
        f"{shlex.join(command)}\nrc=$?\ncp -a {shlex.quote(str(mnt))} {shlex.quote(str(after))}\nexit $rc\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode != 99, f"cannot mount a tmpfs in a private namespace here: {r.stderr}"
    return r


def test_triton_repo_full_disk_keeps_the_previous_repository(tmp_path):
    art = fake_cpu_artifacts(tmp_path / "art")
    repo = tmp_path / "repo"
    r = run_module("build.triton_repo", "--engines", str(art), "--out", str(repo))
    assert r.returncode == 0, r.stderr
    before = snapshot(repo)
    r = run_module("build.triton_repo", "--engines", str(art), "--out", str(repo), preexec_fn=_limit(100_000))
    line = assert_one_line_failure(
        r.returncode, r.stderr, EXIT_OUTPUT, "no space left", f"{repo}/router/2/model.onnx"
    )
    assert str(art) not in line and ".staging" not in line
    assert snapshot(repo) == before  # version 1 only, bit for bit: a server loads it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "repo"]  # no staging folder left
    parses_as_triton_repo(repo)
    # the next good run adds version 2 beside the untouched version 1 (linked, not copied)
    r = run_module("build.triton_repo", "--engines", str(art), "--out", str(repo))
    assert r.returncode == 0, r.stderr
    after = snapshot(repo)
    assert {
        k: v for k, v in after.items() if k in before and "config.pbtxt" not in k and k != "dynpose_repo.json"
    } == {k: v for k, v in before.items() if "config.pbtxt" not in k and k != "dynpose_repo.json"}
    assert (repo / "small" / "2" / "model.onnx").is_file() and json.loads(
        (repo / "dynpose_repo.json").read_text()
    )["version"] == 2
    parses_as_triton_repo(repo)


def test_triton_repo_on_a_full_file_system_keeps_the_previous_repository(tmp_path):
    art = fake_cpu_artifacts(tmp_path / "art")
    repo = tmp_path / "repo"
    assert run_module("build.triton_repo", "--engines", str(art), "--out", str(repo)).returncode == 0
    before = snapshot(repo)
    used_kb = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) // 1024
    target = tmp_path / "small" / "repo"
    r = in_small_fs(
        tmp_path,
        used_kb + 250,
        repo,  # room for less than one more 200 KB model
        [sys.executable, "-m", "build.triton_repo", "--engines", str(art), "--out", str(target)],
    )
    line = assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", f"{target}/")
    assert "/2/" in line and ".staging" not in line and str(art) not in line
    assert snapshot(tmp_path / "after" / "repo") == before
    assert sorted(p.name for p in (tmp_path / "after").iterdir()) == ["repo"]


@pytest.mark.slow
def test_build_with_triton_repo_commits_both_or_neither(cpu_artifacts, coco_mini, tmp_path):
    """--triton-repo on a full file system: the rebuild fails as a whole; the previous artifacts and
    the previous repository are both as they were (before: the artifacts were already replaced)."""
    out = tmp_path / "out"
    prev = out / cpu_artifacts.name
    shutil.copytree(cpu_artifacts, prev)
    repo = tmp_path / "repo"
    assert run_module("build.triton_repo", "--engines", str(prev), "--out", str(repo)).returncode == 0
    art_before, repo_before = snapshot(prev), snapshot(repo)
    used_kb = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) // 1024
    target = tmp_path / "small" / "repo"
    config, target_name = cpu_artifacts.name.rsplit("-", 1)
    r = in_small_fs(
        tmp_path,
        used_kb * 13 // 10,
        repo,
        [
            sys.executable,
            "-m",
            "build.engines",
            "--config",
            config,
            "--target",
            target_name,
            "--out",
            str(out),
            "--calib-data",
            str(coco_mini),
            "--fuse-decode",
            "--triton-repo",
            str(target),
        ],
    )
    line = assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", f"{target}/")
    assert ".staging" not in line
    assert snapshot(prev) == art_before, (
        "the artifacts were replaced although their repository was not written"
    )
    assert snapshot(tmp_path / "after" / "repo") == repo_before
    assert sorted(p.name for p in out.iterdir()) == [prev.name]


def test_commit_together_swaps_back_when_one_folder_cannot_go_in(tmp_path):
    from build.staging import StagedDir, commit_together

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "f").write_text("old")
    with pytest.raises(OutputError) as e:
        with StagedDir(a) as sa, StagedDir(b) as sb:
            (sa.path / "f").write_text("new")
            (sb.path / "f").write_text("new")
            shutil.rmtree(sb.path)  # b's staged folder is gone: its swap fails after a's went in
            commit_together(sa, sb)
    assert str(b) in str(e.value) and ".staging" not in str(e.value)
    assert (a / "f").read_text() == "old" and (b / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def _synth(out: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    return run_module("build.synth", "--video", str(out), "--photos", "", *extra, **kw)


def test_synth_clip_full_disk_keeps_the_previous_clip(tmp_path):
    out = tmp_path / "clip"
    (out).mkdir()
    (out / "notes.txt").write_text("a user's file")
    assert _synth(out, "--seconds", "0.4").returncode == 0
    before = snapshot(out)
    r = _synth(out, "--seconds", "2", preexec_fn=_limit(20_000))
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, f"{out}/synth.mp4")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_synth_clip_under_another_name_removes_and_names_the_earlier_clip(tmp_path):
    out = tmp_path / "clip"
    assert _synth(out, "--seconds", "0.2").returncode == 0
    r = _synth(out, "--seconds", "0.2", "--name", "other")
    assert r.returncode == 0, r.stderr
    assert f"removed {out / 'synth.mp4'}" in r.stdout  # its ground truth is gone: the clip would mislead
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "other.mp4", "person_keypoints.json"]
    gt = json.loads((out / "person_keypoints.json").read_text())
    assert gt["videos"][0]["file_name"] == "other.mp4"


def test_synth_dataset_rerun_leaves_no_image_of_the_earlier_run(tmp_path):
    from build.synth.coco import write_dataset

    write_dataset(tmp_path / "d", 3, seed=1, photos=[])
    paths = write_dataset(tmp_path / "d", 2, seed=1, photos=[])
    gt = json.loads(paths["keypoints"].read_text())
    assert sorted(p.name for p in paths["images"].iterdir()) == sorted(im["file_name"] for im in gt["images"])


def test_video_rerun_removes_and_names_the_earlier_runs_overlay(cpu_artifacts, shared_data, tmp_path):
    out = tmp_path / "o"
    args = [
        "--engines",
        str(cpu_artifacts),
        "--source",
        str(shared_data / "video" / "people.mp4"),
        "--out",
        str(out),
        "--threads",
        "1",
        "--quiet",
        "--max-frames",
        "2",
    ]
    assert run_module("runtime.video", *args).returncode == 0
    (out / "people.overlay.1.avi").write_bytes((out / "people.overlay.avi").read_bytes())  # an old rollover
    assert (out / "people.summary.json").is_file()
    r = run_module("runtime.video", *args, "--no-video")
    assert r.returncode == 0, r.stderr
    note = [line for line in r.stderr.splitlines() if line.startswith("note: moved")]
    assert len(note) == 1 and "people.overlay.avi" in note[0] and "people.overlay.1.avi" in note[0]
    assert "people.previous" in note[0]
    assert sorted(p.name for p in out.iterdir()) == [
        "people.jsonl",
        "people.summary.json",
    ]  # ended well: aside gone
    assert json.loads((out / "people.summary.json").read_text())["outputs"]["video"] == []


def test_failed_video_rerun_keeps_the_earlier_runs_results_named(cpu_artifacts, shared_data, tmp_path):
    """A rerun into the same --out that fails (a full disk) must not cost the earlier complete run:
    its JSON Lines, overlay and summary stay, moved aside into people.previous/ and named."""
    out = tmp_path / "o"
    args = [
        "--engines",
        str(cpu_artifacts),
        "--source",
        str(shared_data / "video" / "people.mp4"),
        "--out",
        str(out),
        "--threads",
        "1",
        "--quiet",
        "--max-frames",
        "3",
    ]
    assert run_module("runtime.video", *args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"people.jsonl", "people.overlay.avi", "people.summary.json"}
    r = run_module("runtime.video", *args, preexec_fn=_limit(4096))  # the new overlay cannot be written
    assert r.returncode == EXIT_OUTPUT, r.stderr
    assert "people.previous" in r.stderr
    kept = out / "people.previous"
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before


def test_images_rerun_sets_the_earlier_results_aside_until_it_ends_well(cpu_artifacts, coco_mini, tmp_path):
    out = tmp_path / "o"
    args = [
        "--engines",
        str(cpu_artifacts),
        "--images",
        str(coco_mini),
        "--dets",
        str(coco_mini / "person_detections.json"),
        "--out",
        str(out),
    ]
    assert run_module("runtime.images", *args).returncode == 0
    before = (out / "results.json").read_bytes()
    r = run_module("runtime.images", *args, preexec_fn=_limit(len(before) // 3))
    assert r.returncode == EXIT_OUTPUT, r.stderr
    assert (out / "results.previous" / "results.json").read_bytes() == before  # the complete one, named
    r = run_module("runtime.images", *args)
    assert r.returncode == 0 and "results.previous" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert (out / "results.json").read_bytes() == before


def test_rewritten_file_full_disk_keeps_the_previous_one(tmp_path):
    """bench.gates --record rewrites the baseline: a full disk keeps the old one (before: truncated)."""
    from test_gates import _rounds_record

    run = tmp_path / "run.json"
    run.write_text(json.dumps(_rounds_record([1.6] * 5)))
    baseline = tmp_path / "baseline.json"
    shutil.copyfile(REPO / "bench" / "baseline.json", baseline)
    before = baseline.read_bytes()
    r = run_module(
        "bench.gates", str(run), "--baseline", str(baseline), "--record", preexec_fn=_limit(len(before) // 2)
    )
    assert_one_line_failure(r.returncode, r.stderr, EXIT_OUTPUT, "no space left", str(baseline))
    assert baseline.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "run.json"]


@pytest.mark.parametrize("case", ["out_is_a_file", "out_under_a_file", "role_is_a_file"])
def test_triton_repo_path_of_the_wrong_kind_is_one_line_and_touches_nothing(tmp_path, case):
    art = fake_cpu_artifacts(tmp_path / "art", nbytes=1000)
    repo = tmp_path / "repo"
    if case == "role_is_a_file":
        assert run_module("build.triton_repo", "--engines", str(art), "--out", str(repo)).returncode == 0
        shutil.rmtree(repo / "small")
        (repo / "small").write_text("a user's file")
    else:
        repo.write_text("a user's file")
    before = snapshot(tmp_path)
    out = repo / "sub" if case == "out_under_a_file" else repo
    r = run_module("build.triton_repo", "--engines", str(art), "--out", str(out))
    assert_one_line_failure(
        r.returncode, r.stderr, 2, str(repo)
    )  # a path of the wrong kind: bad input, at the flag
    assert snapshot(tmp_path) == before


def test_build_refuses_bad_triton_flags_before_building(tmp_path):
    """Before: a whole build ran, replaced the artifacts, and only then refused the flag."""
    (tmp_path / "f").write_text("x")
    cases = (
        (["--triton-instances", "0", "--triton-repo", str(tmp_path / "r")], 2, "--triton-instances"),
        (["--triton-repo", str(tmp_path / "f")], 2, str(tmp_path / "f")),
    )
    for flags, code, name in cases:
        r = run_module("build.engines", "--out", str(tmp_path / "out"), *flags, timeout=60)
        assert_one_line_failure(r.returncode, r.stderr, code, name)
        assert "calibration data" not in r.stderr  # refused before any stage ran
        assert not (tmp_path / "out").exists()
