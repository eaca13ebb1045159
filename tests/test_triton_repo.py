"""build.triton_repo: every config.pbtxt parses as Triton's ModelConfig with the fields Triton needs.

Parsed with tritonclient's own model-config protobuf (the schema the server
loads), on a GPU-target manifest with engine records like the ones a Jetson
build writes (dynamic pose profiles, a static DLA router, the fused decode
plugin), so the tensorrt_plan path is checked here where no GPU server runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from build.triton_repo import RepoOptions, main, write_repo
from runtime.artifacts.manifest import sha256_file

IN = [{"name": "input", "shape": ["N", 3, 256, 192], "dtype": "float32"}]
OUTS = {
    "router": [{"name": "score", "shape": ["N", 1], "dtype": "float32"}],
    "small": [{"name": "heatmaps", "shape": ["N", 17, 64, 48], "dtype": "float32"}],
    "large": [
        {"name": "probmaps", "shape": ["N", 17, 64, 48], "dtype": "float32"},
        {"name": "presence", "shape": ["N", 17], "dtype": "float32"},
    ],
}


def _engine(role: str, profile: dict, plugin: bool = False) -> dict:
    io = [{"name": "input", "mode": "input"}] + [{"name": o["name"], "mode": "output"} for o in OUTS[role]]
    if plugin:
        io += [{"name": "keypoints", "mode": "output"}, {"name": "keypoint_scores", "mode": "output"}]
    return {
        "path": f"{role}.engine",
        "precision": "fp16",
        "profiles": [profile],
        "io": io,
        "sha256": hashlib.sha256(b"plan bytes of " + role.encode()).hexdigest(),
        "plugin_library": "libdynpose_plugins.so" if plugin else None,
    }


@pytest.fixture
def orin_artifacts(tmp_path: Path) -> Path:
    d = tmp_path / "dyn-orin"
    d.mkdir()
    models = {}
    for role, head in (("router", "score"), ("small", "heatmap"), ("large", "probmap")):
        (d / f"{role}.onnx").write_bytes(b"onnx bytes of " + role.encode())  # the runtime hashes every file
        models[role] = {
            "role": role,
            "head": head,
            "onnx": f"{role}.onnx",
            "sha256": sha256_file(d / f"{role}.onnx"),
            "inputs": IN,
            "outputs": OUTS[role],
        }
        (d / f"{role}.engine").write_bytes(b"plan bytes of " + role.encode())
    models["router"]["engine"] = _engine("router", {"min": 8, "opt": 8, "max": 8})  # DLA: static
    models["small"]["engine"] = _engine("small", {"min": 1, "opt": 16, "max": 64})
    models["large"]["engine"] = _engine("large", {"min": 1, "opt": 8, "max": 32}, plugin=True)
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "config": "dyn-r50-h32",
                "target": "orin",
                "models": models,
                "routing": {"k1": 0.3, "k2": 0.6},
            }
        )
    )
    return d


def _parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_tensorrt_plan_configs_have_what_triton_requires(orin_artifacts: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    summary = write_repo(orin_artifacts, repo, RepoOptions(instances=2))
    assert summary["kind"] == "plan" and summary["version"] == 1 and summary["missing"] == []
    cfgs = {r: _parse(repo / r / "config.pbtxt") for r in ("router", "small", "large")}
    for role, c in cfgs.items():
        assert c.name == role and c.platform == "tensorrt_plan" and c.default_model_filename == "model.plan"
        assert (repo / role / "1" / "model.plan").read_bytes() == b"plan bytes of " + role.encode()
        assert json.loads((repo / role / "1" / "manifest.json").read_text())["target"] == "orin"
        assert [i.name for i in c.input] == ["input"] and c.input[0].data_type == mc.TYPE_FP32
        assert all(o.data_type == mc.TYPE_FP32 for o in c.output)
        assert [(g.kind, g.count) for g in c.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
        assert c.parameters["onnx_sha256"].string_value == sha256_file(orin_artifacts / f"{role}.onnx")
    small = cfgs["small"]
    assert small.max_batch_size == 64 and list(small.input[0].dims) == [3, 256, 192]
    assert list(small.output[0].dims) == [17, 64, 48]
    assert list(small.dynamic_batching.preferred_batch_size) == [16, 64]
    assert 0 < small.dynamic_batching.max_queue_delay_microseconds <= 5000
    # the fused-decode engine serves its keypoints too; the plugin library is named for LD_PRELOAD
    large = cfgs["large"]
    assert [o.name for o in large.output] == ["probmaps", "presence", "keypoints", "keypoint_scores"]
    assert list(large.output[2].dims) == [17, 2] and large.parameters["plugin_library"].string_value
    assert summary["plugin_libraries"] == ["libdynpose_plugins.so"]
    # a static (DLA) engine cannot take variable batches: unbatched, N in the dims, no batcher
    router = cfgs["router"]
    assert router.max_batch_size == 0 and list(router.input[0].dims) == [8, 3, 256, 192]
    assert not router.HasField("dynamic_batching")
    bls = _parse(repo / "dynpose" / "config.pbtxt").parameters  # the BLS chunks/pads like the client
    assert [bls[f"{r}_batch"].string_value for r in ("router", "small", "large")] == ["8!", "64", "32"]


def test_python_kind_bls_and_versions(orin_artifacts: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_repo(orin_artifacts, repo, RepoOptions(kind="python"))
    second = write_repo(orin_artifacts, repo, RepoOptions(kind="python"))
    assert second["version"] == 2  # a version per build, in every role at once
    for role in ("router", "small", "large", "dynpose"):
        assert sorted(p.name for p in (repo / role).iterdir() if p.is_dir()) == ["1", "2"]
        c = _parse(repo / role / "config.pbtxt")
        assert c.backend == "python" and c.version_policy.latest.num_versions == 1
        assert (repo / role / "2" / "model.py").is_file()
    small = _parse(repo / "small" / "config.pbtxt")
    assert small.max_batch_size == 32 and small.dynamic_batching.preferred_batch_size
    assert small.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert (repo / "small" / "2" / "model.onnx").read_bytes() == b"onnx bytes of small"
    bls = _parse(repo / "dynpose" / "config.pbtxt")
    assert bls.max_batch_size == 0 and [i.name for i in bls.input] == ["crops"]
    assert {o.name for o in bls.output} == {
        "keypoints",
        "keypoint_scores",
        "presence",
        "route",
        "router_score",
    }
    lib = repo / "dynpose" / "2" / "dynpose_lib" / "runtime"
    assert {"registry.py", "decode.py"} <= {p.name for p in (lib / "heads").iterdir()}
    assert (lib / "pose" / "routing.py").is_file()


_SHIPPED = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from runtime.heads.registry import decode_outputs
from runtime.pose.routing import route_band
outs = dict(np.load(sys.argv[2]))
res = {}
for head, keys in (("heatmap", ["heatmaps"]), ("probmap", ["probmaps", "presence"]),
                   ("probmap", ["probmaps", "presence", "outer_probmaps"])):
    got = decode_outputs(head, {k: outs[k] for k in keys}, 0.7, 0.5)
    for i, a in enumerate(got):
        res[f"{head}{len(keys)}_{i}"] = a
res["band"] = route_band(outs["score"], 0.3, 0.6)
np.savez(sys.argv[3], **res)
mods = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "runtime"]
print("\\n".join(mods))
"""


def test_bls_lib_imports_alone_and_decodes_as_the_runtime(orin_artifacts: Path, tmp_path: Path) -> None:
    """The BLS model's shipped code is import-closed (no module from the project tree) and
    its decode is the runtime's, the double-map merge included (the BLS once copied the decode
    and lost the merge)."""
    import subprocess
    import sys

    import numpy as np

    from runtime.heads.registry import decode_outputs
    from runtime.pose.routing import route_band

    repo = tmp_path / "repo"
    write_repo(orin_artifacts, repo, RepoOptions(kind="python"))
    lib = repo / "dynpose" / "1" / "dynpose_lib"
    rng = np.random.default_rng(0)
    outs = {
        "heatmaps": rng.normal(size=(3, 17, 64, 48)).astype(np.float32),
        "probmaps": rng.dirichlet(np.ones(64 * 48) * 0.05, size=(3, 17))
        .reshape(3, 17, 64, 48)
        .astype(np.float32),
        "outer_probmaps": rng.dirichlet(np.ones(64 * 48) * 0.05, size=(3, 17))
        .reshape(3, 17, 64, 48)
        .astype(np.float32),
        "presence": rng.uniform(size=(3, 17)).astype(np.float32),
        "score": rng.uniform(size=40).astype(np.float32),
    }
    np.savez(tmp_path / "outs.npz", **outs)
    script = tmp_path / "shipped.py"
    script.write_text(_SHIPPED)
    run = subprocess.run(
        [sys.executable, "-I", str(script), str(lib), str(tmp_path / "outs.npz"), str(tmp_path / "got.npz")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    files = run.stdout.split()
    assert files and all(Path(f).is_relative_to(lib) for f in files), files
    got = np.load(tmp_path / "got.npz")
    for head, keys in (
        ("heatmap", ["heatmaps"]),
        ("probmap", ["probmaps", "presence"]),
        ("probmap", ["probmaps", "presence", "outer_probmaps"]),
    ):
        want = decode_outputs(head, {k: outs[k] for k in keys}, 0.7, 0.5)
        for i, a in enumerate(want):
            np.testing.assert_array_equal(got[f"{head}{len(keys)}_{i}"], a)
    np.testing.assert_array_equal(got["band"], route_band(outs["score"], 0.3, 0.6))
    keys = ("probmaps", "presence")
    merged = decode_outputs("probmap", {k: outs[k] for k in (*keys, "outer_probmaps")}, 0.7)
    plain = decode_outputs("probmap", {k: outs[k] for k in keys}, 0.7)
    assert not np.array_equal(merged[0], plain[0])  # the merge moved keypoints: the case is not vacuous


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--engines", str(tmp_path), "--out", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no manifest.json") and "Traceback" not in err[0]
