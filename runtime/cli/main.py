"""``dynpose``: one command over every ``python -m`` entry point (``dynpose build``, ``dynpose video`` ...).

Why a dispatcher and not argparse subparsers: each subcommand's own parser
stays the one definition of its flags (``python -m build.engines`` keeps
working unchanged), and a subcommand's module is imported only when it runs,
so ``dynpose video`` on a device without torch never touches ``build``. It
lives in ``runtime`` because that is the package every install has; the
modules are named by string and imported lazily, so ``runtime`` still imports
nothing of ``build``/``calib``/``bench``/``tools`` (tests/test_layering.py).
A module that is not installed (a runtime-only install) is one line, exit 3.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence

from runtime.errors import EXIT_INCOMPLETE, EXTRAS, InputError, UserError, guarded, split_debug

# name -> (module, function, python -m prog, one-line summary); a dict value is a group of subcommands
Entry = tuple[str, str, str, str]
COMMANDS: dict[str, Entry | dict[str, Entry]] = {
    "build": (
        "build.engines",
        "main",
        "python -m build.engines",
        "checkpoints -> ONNX -> calibration -> engines or build_plan.sh (an artifacts folder)",
    ),
    "router": ("build.router", "main", "python -m build.router", "train the difficulty router on COCO data"),
    "images": (
        "runtime.images",
        "_main",
        "python -m runtime.images",
        "pose a folder of images -> COCO results JSON",
    ),
    "video": (
        "runtime.video.__main__",
        "main",
        "python -m runtime.video",
        "pose videos, image folders, cameras and streams -> JSON Lines + overlay",
    ),
    "costs": (
        "runtime.pose.costs",
        "main",
        "python -m runtime.pose.costs",
        "re-measure the nets' routing cost ratios on this device into manifest.json",
    ),
    "eval": {
        "coco": (
            "bench.coco_eval",
            "_main",
            "python -m bench.coco_eval",
            "COCO keypoint AP/AR of a results JSON",
        ),
        "ex-oks": (
            "bench.ex_oks",
            "_main",
            "python -m bench.ex_oks",
            "Ex-OKS AP, presence accuracy, in/out of window",
        ),
        "cropcoco": (
            "bench.cropcoco",
            "_main",
            "python -m bench.cropcoco",
            "make a CropCOCO-style set (keypoints cut off by the image edge)",
        ),
        "accuracy": (
            "bench.accuracy",
            "_main",
            "python -m bench.accuracy",
            "AP per precision (fp32, fp16, int8)",
        ),
        "sweep": (
            "bench.sweep",
            "_main",
            "python -m bench.sweep",
            "accuracy / speed trade-off table and plot",
        ),
        "video": (
            "bench.video_eval",
            "main",
            "python -m bench.video_eval",
            "AP, IDF1/MOTA, jitter of runtime.video JSON Lines on a synthetic clip",
        ),
        "track": (
            "bench.track_eval",
            "main",
            "python -m bench.track_eval",
            "trackers on a synthetic clip's boxes",
        ),
        "detector": (
            "bench.detector_eval",
            "_main",
            "python -m bench.detector_eval",
            "the artifacts' detector: box/keypoint AP and drift per variant",
        ),
        "coverage": (
            "calib.coverage",
            "main",
            "python -m calib.coverage",
            "credible-region coverage before/after calibration",
        ),
    },
    "bench": {
        "gates": (
            "bench.gates",
            "_main",
            "python -m bench.gates",
            "check a pytest-benchmark JSON against the gates",
        ),
        "triton": (
            "bench.triton_serving",
            "_main",
            "python -m bench.triton_serving",
            "cameras served through a real Triton server",
        ),
        "conditions": (
            "bench.conditions",
            "_main",
            "python -m bench.conditions",
            "this machine's benchmark conditions as JSON",
        ),
        "results-page": (
            "bench.results_page",
            "_main",
            "python -m bench.results_page",
            "a dated docs/results page from a make bench JSON",
        ),
    },
    "serve": {
        "repo": (
            "build.triton_repo",
            "_main",
            "python -m build.triton_repo",
            "write (or add a version to) a Triton model repository",
        ),
        "triton": (
            "tools.triton_server",
            "_main",
            "python -m tools.triton_server",
            "run the bundled tritonserver on loopback",
        ),
        "rtsp": (
            "tools.rtsp_server",
            "_main",
            "python -m tools.rtsp_server",
            "replay a video as RTSP cameras on loopback",
        ),
    },
    "device-check": (
        "tools.device_check.__main__",
        "main",
        "python -m tools.device_check",
        "one-command GPU validation (kernels, TensorRT vs ORT)",
    ),
    "synth": (
        "build.synth.__main__",
        "main",
        "python -m build.synth",
        "synthetic people: a COCO-style set, or a clip with --video",
    ),
    "train": {
        "fixtures": (
            "build.train.fixtures",
            "main",
            "python -m build.train.fixtures",
            "train the small fixture nets on synthetic people",
        ),
        "double": (
            "build.train.double",
            "_main",
            "python -m build.train.double",
            "train the double-heatmap outer head",
        ),
        "rtm-fixture": (
            "build.train.rtm_fixture",
            "main",
            "python -m build.train.rtm_fixture",
            "train the RTMPose-t fixture (SimCC) on synthetic people",
        ),
        "detector": (
            "build.train.detector",
            "main",
            "python -m build.train.detector",
            "train an RTMDet-nano person detector on synthetic scenes",
        ),
    },
    "zoo": (
        "build.zoo",
        "main",
        "python -m build.zoo",
        "released checkpoints by name: list them, fetch them into the cache",
    ),
    "record": (
        "build.trt.record",
        "main",
        "python3 -m build.trt.record",
        "fill engine records after build_plan.sh (trtexec)",
    ),
    "screenshot": (
        "tools.overlay_screenshot",
        "_main",
        "python -m tools.overlay_screenshot",
        "grab one overlay frame as a PNG",
    ),
}

# which extra a missing top-level module comes from: the one map, runtime.errors.EXTRAS
EXTRA_OF = EXTRAS


def _listing(table: Mapping[str, Entry | Mapping[str, Entry]], prefix: str) -> str:
    rows = []
    for name, entry in table.items():
        if isinstance(entry, tuple):
            rows.append(f"  {name:<13} {entry[3]}")
        else:
            rows.append(f"  {name:<13} {' | '.join(entry)}")
    return (
        f"usage: {prefix} COMMAND [flags]   ({prefix} COMMAND --help for its flags)\n\ncommands:\n"
        + "\n".join(rows)
    )


def _help(table: Mapping[str, Entry | Mapping[str, Entry]], prefix: str) -> str:
    head = (__doc__ or "").splitlines()[0] if prefix == "dynpose" else f"{prefix}: choose a subcommand"
    extra = (
        "\n\nEvery command takes --debug (traceback of any failure). Exit codes: 0 success, 1 internal "
        "error, 2 bad input, 3 input ended early or a required tool is absent, 4 an output could not be "
        "written, 130/143 interrupted/terminated."
    )
    return f"{head}\n\n{_listing(table, prefix)}{extra if prefix == 'dynpose' else ''}"


def resolve(argv: Sequence[str]) -> tuple[Entry | None, str, list[str]]:
    """argv -> (entry or None for a help request, the command's name, its own argv)."""
    table: Mapping[str, Entry | Mapping[str, Entry]] = COMMANDS
    prefix, rest = "dynpose", list(argv)
    while True:
        if not rest or rest[0] in ("-h", "--help"):
            if not rest:
                raise InputError(
                    f"{prefix} needs a command",
                    None,
                    f"choose one of {', '.join(table)} (see {prefix} --help)",
                )
            print(_help(table, prefix))
            return None, prefix, []
        name, rest = rest[0], rest[1:]
        entry = table.get(name)
        if entry is None:
            raise InputError(f"unknown command {name!r}", prefix, f"choose one of {', '.join(table)}")
        prefix = f"{prefix} {name}"
        if isinstance(entry, tuple):
            return entry, prefix, rest
        table = entry


def load(entry: Entry, prog: str) -> Callable[[list[str]], int | None]:
    """The subcommand's function, its module imported now; a module this install lacks is one line."""
    module, func, old_prog, _ = entry
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRA_OF and top not in ("build", "calib", "measure", "bench", "tools", "kernels"):
            raise
        extra = EXTRA_OF.get(top)
        fix = (
            f"install it: pip install 'dynpose-trt[{extra}]'"
            if extra
            else "run it from a source checkout (this package is not installed here)"
        )
        raise UserError(
            f"{prog} needs {top}, which is not installed", module, fix, code=EXIT_INCOMPLETE
        ) from None
    from runtime.cli import args as cli_args

    cli_args.PROG_NAMES[old_prog] = prog
    run: Callable[[list[str]], int | None] = getattr(mod, func)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dynpose`` console script (pyproject [project.scripts])."""
    args, debug = split_debug(argv)
    if debug:  # the subcommand's own boundary (when it has one) must see --debug too
        os.environ["DYNPOSE_DEBUG"] = "1"

    def run(a: list[str]) -> int | None:
        entry, name, rest = resolve(a)
        if entry is None:
            return 0
        return load(entry, name)(rest)

    return guarded(run, args, prog="dynpose")
