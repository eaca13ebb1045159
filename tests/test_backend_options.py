"""Typed backend options (runtime.backends.options): each backend takes its own options and
refuses any other by name (exit 2), when the options are built, before a net, an engine or a
server is touched. Before this, ``--threads`` was silently ignored on TensorRT and a misspelled
Triton option was accepted."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import load_pipeline
from runtime.cli.args import backend_options
from runtime.errors import EXIT_INPUT, InputError

REPO = Path(__file__).resolve().parents[1]


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"backend": "auto", "threads": None, "triton_url": None, **kw})


def test_threads_with_tensorrt_is_refused_at_the_cli_edge() -> None:
    with pytest.raises(InputError) as e:
        backend_options(_args(backend="trt", threads=4))
    assert "--threads" in str(e.value) and "--backend trt" in str(e.value)


def test_threads_with_triton_is_refused_at_the_cli_edge() -> None:
    with pytest.raises(InputError, match="--threads"):
        backend_options(_args(backend="triton", threads=2, triton_url="127.0.0.1:8001"))


def test_cli_edge_builds_the_typed_options() -> None:
    from runtime.backends.options import OrtOptions, TritonOptions

    assert backend_options(_args(backend="ort", threads=3)) == OrtOptions(threads=3)
    assert backend_options(_args(threads=3)) == OrtOptions(threads=3)  # auto: ONNX Runtime's
    assert backend_options(_args(triton_url="10.0.0.2:8001")) == TritonOptions(url="10.0.0.2:8001")


def test_tensorrt_backend_refuses_threads_before_loading_tensorrt(tmp_path: Path) -> None:
    """No TensorRT here: the refusal comes from the options, before ``import tensorrt``."""
    from runtime.backends.trt import TrtBackend

    with pytest.raises(InputError) as e:
        TrtBackend(tmp_path, {"models": {}}, threads=4)
    assert "threads" in str(e.value) and e.value.code == EXIT_INPUT


def test_auto_options_checked_again_against_the_backend_auto_picks() -> None:
    """--backend auto --threads N is ONNX Runtime's; if auto picks TensorRT the option is refused."""
    from runtime.backends.options import BackendOptionError, make_options

    picked_for_auto = make_options("auto", {"threads": 2})
    with pytest.raises(BackendOptionError, match="threads"):
        make_options("trt", picked_for_auto, precision="fp16")
    assert make_options("trt", make_options("auto", {}), precision="fp16").precision == "fp16"


def test_misspelled_triton_option_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(InputError) as e:
        load_pipeline(tmp_path, backend="triton", triton_ulr="127.0.0.1:8001")
    assert "triton_ulr" in str(e.value)
    with pytest.raises(InputError) as e:
        load_pipeline(tmp_path, backend="triton", backend_options={"url": "127.0.0.1:1", "timeout": 5})
    assert "timeout" in str(e.value) and "timeout_s" in str(e.value)  # names it and what is taken


@pytest.mark.parametrize(
    "values, named",
    [({"threads": 0}, "threads"), ({"providers": "gpu"}, "providers"), ({"slots": 2}, "slots")],
)
def test_ort_option_values_checked(values: dict[str, object], named: str) -> None:
    from runtime.backends.options import BackendOptionError, make_options

    with pytest.raises(BackendOptionError, match=named):
        make_options("ort", values)


def test_keyword_backend_options_reach_the_runner(tmp_path: Path) -> None:
    """The Python API keeps keyword options: ``load_pipeline(root, threads=1)`` sets ONNX Runtime's threads."""
    from runtime.backends.options import OrtOptions
    from tools.device_check.tiny_artifacts import make_artifacts

    root = tmp_path / "a"
    make_artifacts(root, target="cpu")
    with load_pipeline(root, backend="ort", threads=1) as pipe:
        assert pipe.backend.options == OrtOptions(threads=1)
        assert all(r.threads == 1 for r in pipe.runners.values())


def test_video_cli_threads_with_tensorrt_exit_2_one_line(tmp_path: Path) -> None:
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text("{}")
    r = subprocess.run(
        [sys.executable, "-m", "runtime.video", "--engines", str(tmp_path / "art"), "--source",
         str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out"), "--backend", "trt", "--threads", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == EXIT_INPUT, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --threads does not apply to --backend trt"), (
        r.stderr
    )


def test_an_option_given_twice_with_two_values_is_refused() -> None:
    """The pipeline passes its own precision; a different one inside backend_options is not dropped silently."""
    from runtime.backends.options import BackendOptionError, make_options

    with pytest.raises(BackendOptionError, match="precision given twice"):
        make_options("ort", {"precision": "int8_cpu"}, precision="fp32")
    assert make_options("ort", {"precision": "fp16"}, precision="fp16").precision == "fp16"
