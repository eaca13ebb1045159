"""argparse types that validate at the edge, before any expensive work.

Why hand-written: argparse has ``type=`` hooks but no ranged numbers or path
kinds; each type below raises ``argparse.ArgumentTypeError`` so the message
names the flag (argparse adds it) and exits 2 before a network is touched.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from runtime.backends.options import BackendOptions


def number(
    kind: type[int] | type[float] = float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[str], float | int]:
    """A finite int/float in [lo, hi] (open ends with lo_open/hi_open)."""

    def parse(text: str) -> float | int:
        try:
            v: float | int = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        low_bad = lo is not None and (v <= lo if lo_open else v < lo)
        high_bad = hi is not None and (v >= hi if hi_open else v > hi)
        if low_bad or high_bad:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"{text} is out of range {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            )
        return v

    parse.__name__ = kind.__name__  # argparse's "invalid <name> value" wording
    return parse


positive_int = number(int, lo=1)
nonneg_int = number(int, lo=0)
positive_float = number(float, lo=0, lo_open=True)
nonneg_float = number(float, lo=0)
unit_float = number(float, lo=0, hi=1)
percent = number(float, lo=0, hi=100)


def existing_file(text: str) -> Path:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return p


def existing_dir(text: str) -> Path:
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not an existing folder")
    return p


def artifacts_dir(text: str) -> Path:
    """A built artifacts folder: exists and holds manifest.json (its content is checked at load)."""
    p = existing_dir(text)
    if not (p / "manifest.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} has no manifest.json; build it with python -m build.engines "
            "and pass the folder it prints"
        )
    return p


def existing_path(text: str) -> Path:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return p


def _writable_parent(p: Path, text: str) -> None:
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists():  # the folder will be created: check its nearest existing ancestor
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {probe} is not writable")


def output_dir(text: str) -> Path:
    """A folder to write into: may not exist yet, must not be a file, must be writable."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; pass a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text} is not writable")
    else:
        _writable_parent(p / "x", text)
    return p


def output_file(text: str) -> Path:
    """A file to write: may not exist yet, must not be a folder, its folder must be writable."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    _writable_parent(p, text)
    return p


# ``python -m X`` prog -> the name the ``dynpose`` command runs it under (set by runtime.cli.main), so
# usage lines and "see ... --help" hints name the command the user typed.
PROG_NAMES: dict[str, str] = {}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one ``error: ...`` line (no usage block) via the
    shared boundary, so every command fails the same way (exit 2)."""

    def __init__(self, prog: str | None = None, **kw: Any) -> None:
        for old, new in PROG_NAMES.items():  # "python -m build.synth --video" -> "dynpose synth --video"
            if prog and (prog == old or prog.startswith(old + " ")):
                prog = new + prog[len(old) :]
        super().__init__(prog=prog, **kw)

    def error(self, message: str) -> NoReturn:
        from runtime.errors import InputError

        raise InputError(message, None, f"see {self.prog} --help")


class DeprecatedAlias(argparse.Action):
    """An old flag spelling kept for one release: stores into the new flag's dest and prints one
    ``warning:`` line naming the new spelling (CHANGELOG.md lists every alias)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kw: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        import sys

        print(
            f"warning: {option_string} is deprecated and goes in the next release; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_json_argument(
    p: argparse.ArgumentParser, help: str, old: str | None = "--json-out", stdout: bool = False
) -> None:
    """``--json FILE``: the one spelling of "also write the result as JSON here" (``old``: a deprecated alias;
    ``stdout``: a bare ``--json`` gives True: print the JSON instead, as the evaluators always did)."""
    more: dict[str, Any] = {"nargs": "?", "const": True} if stdout else {}  # not a str: no type= run on it
    p.add_argument("--json", type=output_file, default=None, metavar="FILE", help=help, **more)
    if old:
        p.add_argument(
            old, dest="json", type=output_file, action=DeprecatedAlias, new="--json", help=argparse.SUPPRESS
        )


def out_file_in(name: str, *old_suffixes: str) -> Callable[[str], Path]:
    """``--out DIR``: the one meaning of --out (a folder); the command writes DIR/``name``. A path ending
    in one of ``old_suffixes`` that is not a folder is the old file spelling: kept one release, with a
    one-line warning (CHANGELOG.md)."""

    def parse(text: str) -> Path:
        if text.endswith(old_suffixes) and not Path(text).is_dir():
            import sys

            print(
                f"warning: --out FILE is deprecated and goes in the next release; pass a folder "
                f"(--out DIR writes DIR/{name})",
                file=sys.stderr,
            )
            return output_file(text)
        return output_dir(text) / name

    parse.__name__ = "folder"
    return parse


def run_precision(text: str) -> str:
    """--precision at run time: fp32, fp16, int8 (the build's names; int8 = the int8_cpu variant ONNX
    Runtime runs) or any variant name in the manifest (int8_cpu, int8_trt ...), checked at load."""
    from runtime.artifacts.manifest import PRECISION_VARIANTS

    if not text or not text.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a precision; use fp32, fp16, int8 or a variant name"
        )
    return PRECISION_VARIANTS.get(text, text)


run_precision.__name__ = "precision"

port = number(int, lo=0, hi=65535)  # a TCP port; 0 = a free one (the servers' --port flags)


def host_port(text: str) -> str:
    """``HOST:PORT`` of a network endpoint (``--triton-url``), port 1-65535, no scheme."""
    host, sep, port = text.rpartition(":")
    if "://" in text or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8001, no scheme)")
    return text


# Backend option -> the flag that sets it, so a refusal names what the user typed.
BACKEND_FLAGS = {"threads": "--threads", "url": "--triton-url"}


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The typed backend options (runtime.backends.options) from ``--backend``, ``--threads`` and
    ``--triton-url``, for the pose nets and the artifacts' detector alike; built once, here.

    A Triton address means Triton: with ``--backend auto`` it picks ``triton`` (a user who names
    a server expects it used, not a silent local run); with ``--backend ort``/``trt`` the two
    flags contradict each other and are refused (exit 2), as is a flag the backend does not use
    (``--threads`` with ``--backend trt`` or ``triton``)."""
    from runtime.backends.options import make_options, names
    from runtime.errors import InputError

    url = getattr(args, "triton_url", None)
    if url and args.backend == "auto":
        args.backend = "triton"
    elif url and args.backend != "triton":
        raise InputError(
            f"--triton-url {url} only applies to --backend triton, not --backend {args.backend}",
            None,
            "drop --triton-url to run locally, or use --backend triton",
        )
    if args.backend == "triton" and not url:
        raise InputError(
            "--backend triton needs the server's gRPC address", None, "add --triton-url HOST:PORT"
        )
    values = {"threads": getattr(args, "threads", None), "url": url}
    values = {k: v for k, v in values.items() if v is not None}
    for k in values:
        if k not in names(args.backend):
            raise InputError(
                f"{BACKEND_FLAGS[k]} does not apply to --backend {args.backend}",
                BACKEND_FLAGS[k],
                f"drop {BACKEND_FLAGS[k]}, or use --backend ort (it sets ONNX Runtime's threads per net)",
            )
    return make_options(args.backend, values)
