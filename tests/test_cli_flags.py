"""One spelling and one meaning per flag across commands, the old spellings kept one release with a
one-line warning (CHANGELOG.md), and the Python API refusing what the flags refuse.

In-process and fast: the parsers are the real ones; nothing runs past them except where a test says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import InputError


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_json_out_is_a_deprecated_alias_of_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli.args import OneLineParser, add_json_argument

    p = OneLineParser(prog="t")
    add_json_argument(p, "x")
    assert p.parse_args(["--json", str(tmp_path / "a.json")]).json == tmp_path / "a.json"
    assert _warnings(capsys.readouterr().err) == []
    assert p.parse_args(["--json-out", str(tmp_path / "b.json")]).json == tmp_path / "b.json"
    (w,) = _warnings(capsys.readouterr().err)
    assert "--json-out is deprecated" in w and "use --json" in w
    with pytest.raises(InputError, match="--json-out"):  # the old spelling is checked like the new one
        p.parse_args(["--json-out", str(tmp_path)])


def test_out_is_a_folder_and_out_file_is_deprecated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.images import build_parser

    base = ["--engines", str(tmp_path), "--images", str(tmp_path), "--detector", "hog"]
    assert (
        build_parser().parse_args(base + ["--out", str(tmp_path / "run")]).out
        == tmp_path / "run" / "results.json"
    )
    assert build_parser().parse_args(base).out == Path(".") / "results.json"  # as before: ./results.json
    assert _warnings(capsys.readouterr().err) == []
    assert build_parser().parse_args(base + ["--out", str(tmp_path / "r.json")]).out == tmp_path / "r.json"
    (w,) = _warnings(capsys.readouterr().err)
    assert "--out FILE is deprecated" in w and "results.json" in w
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(InputError, match="--out.*is a file; pass a folder"):
        build_parser().parse_args(base + ["--out", str(f)])


def test_triton_serving_out_is_now_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.triton_serving import _main

    with pytest.raises(InputError, match="--frames"):  # parsed up to the first refused flag, nothing run
        _main(["--out", str(tmp_path / "t.json"), "--frames", "0"])
    (w,) = _warnings(capsys.readouterr().err)
    assert "--out is deprecated" in w and "--json" in w


def test_run_time_precision_takes_the_build_names() -> None:
    from runtime.artifacts.manifest import ManifestError, model_file
    from runtime.images import build_parser
    from runtime.video.args import build_parser as video_parser

    base = ["--engines", ".", "--images", ".", "--detector", "hog"]
    assert build_parser().parse_args(base + ["--precision", "int8"]).precision == "int8_cpu"
    assert build_parser().parse_args(base + ["--precision", "int8_trt"]).precision == "int8_trt"
    assert video_parser().parse_args(["--engines", ".", "--precision", "int8"]).precision == "int8_cpu"
    with pytest.raises(InputError, match="--precision"):
        build_parser().parse_args(base + ["--precision", "int8 cpu"])
    manifest = {"models": {"small": {"onnx": "small.onnx", "sha256": "0" * 64, "variants": {}}}}
    with pytest.raises(ManifestError, match="no 'int8_cpu' model"):  # the API maps int8 the same way
        model_file(".", manifest, "small", "int8")


def test_max_boxes_has_one_default() -> None:
    from runtime.images import build_parser
    from runtime.pose.pipeline import PipelineOptions
    from runtime.video.args import build_parser as video_parser

    images = build_parser().parse_args(["--engines", ".", "--images", ".", "--detector", "hog"]).max_boxes
    video = video_parser().parse_args(["--engines", "."]).max_boxes
    assert images == video == PipelineOptions().max_boxes


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"credible": (1.5,)}, "credible"),
        ({"credible": (0.0, 0.5)}, "credible"),
        ({"credible": 0.5}, "credible"),
        ({"credible": (float("nan"),)}, "credible"),
        ({"credible": ("0.5",)}, "credible"),
        ({"backend": "cuda"}, "backend"),
        ({"precision": None}, "precision"),
        ({"seed": -1}, "seed"),
        ({"backend_options": ["threads", 2]}, "backend_options"),
    ],
)
def test_api_refuses_bad_options_naming_them(tmp_path: Path, kw: dict, name: str) -> None:
    from runtime.pose.pipeline import OptionError, PosePipeline

    with pytest.raises(OptionError, match=rf"\({name}\)") as e:
        PosePipeline(tmp_path, **kw)  # refused before the (missing) manifest is read
    assert isinstance(e.value, ValueError)


def test_api_keeps_good_credible_values(cpu_artifacts: Path) -> None:
    from runtime.pose.pipeline import PosePipeline

    for masses in ((0.5, 0.9), [0.8], ()):
        with PosePipeline(cpu_artifacts, credible=masses) as pipe:
            assert pipe.prob.masses == tuple(masses)


def test_coco_eval_json_file_or_stdout(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from measure.coco_eval import main

    gt = coco_mini / "person_keypoints.json"
    res = tmp_path / "res.json"
    anns = json.loads(gt.read_text())["annotations"]
    res.write_text(
        json.dumps(
            [
                {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                for a in anns
                if a.get("num_keypoints")
            ]
        )
    )
    assert main(["--gt", str(gt), "--results", str(res), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["--gt", str(gt), "--results", str(res), "--json", str(tmp_path / "sub" / "ap.json")]) == 0
    assert json.loads((tmp_path / "sub" / "ap.json").read_text()) == printed
    assert "AP" in capsys.readouterr().out  # the table, as without --json


def test_engine_record_refuses_a_manifest_without_a_trt_plan(tmp_path: Path) -> None:
    from build.trt.record import main

    (tmp_path / "manifest.json").write_text("{}")  # a --target cpu build: nothing to record
    with pytest.raises(InputError, match="no trt_plan engines"):
        main([str(tmp_path)])
    assert (tmp_path / "manifest.json").read_text() == "{}"
