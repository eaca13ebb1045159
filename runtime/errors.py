"""One error boundary for every command: one line per failure, documented exit codes.

Why a module of its own: ten CLIs (build, runtime, bench) must fail the same
way, so a user (or a supervisor restarting a camera job) can act on the exit
code without reading a traceback. ``runtime`` owns it because ``build`` and
``bench`` may import ``runtime`` but never the reverse.

Exit codes (docs/bad-input.md, "Exit codes"):

====  =====================================================================
0     success
1     unexpected internal error (a bug): one line, ``--debug`` for the traceback
2     bad input: a flag, a path, a record, a manifest, a checkpoint; nothing
      (or only what was already written and is valid) is left behind
3     the run ended early because its input did (a truncated file, a camera
      that stays gone) or a required tool is absent (``--require-trt``);
      everything computed before is written and valid
4     an output could not be written (disk full, read-only, not a folder);
      everything written before is valid
130   interrupted (SIGINT / Ctrl-C), outputs closed and valid
143   terminated (SIGTERM), outputs closed and valid
====  =====================================================================

A message reads ``error: <what> (<which input or flag>): <how to fix>``.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_INCOMPLETE = 3
EXIT_OUTPUT = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

DEBUG_FLAG = "--debug"


class UserError(Exception):
    """An expected failure caused by what the user gave us; printed as one line."""

    code = EXIT_INPUT

    def __init__(
        self, what: str, where: str | None = None, fix: str | None = None, code: int | None = None
    ) -> None:
        self.what, self.where, self.fix = what, where, fix
        if code is not None:
            self.code = code
        super().__init__(self.line())

    def line(self) -> str:
        s = self.what
        if self.where:
            s += f" ({self.where})"
        if self.fix:
            s += f": {self.fix}"
        return s


class InputError(UserError):
    """Bad flag, path, record, manifest or checkpoint (exit 2)."""

    code = EXIT_INPUT


class IncompleteRun(UserError):
    """The input ended or went away mid-run; what was computed is kept (exit 3)."""

    code = EXIT_INCOMPLETE


class OutputError(UserError):
    """An output could not be written; what was written before is valid (exit 4)."""

    code = EXIT_OUTPUT


def output_error(e: OSError, path: object) -> OutputError:
    """An OSError raised while writing ``path`` as one actionable line."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutputError(
            "no space left while writing", str(path), "free disk space or point --out elsewhere"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(
            "cannot write (permission denied or read-only)", str(path), "choose a writable --out"
        )
    if e.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):  # EEXIST: a file where a folder must go
        return OutputError(
            "the output path is of the wrong kind (file vs folder)",
            str(path),
            "pass a file path where a file is expected and a folder where a folder is",
        )
    return OutputError(f"cannot write ({os.strerror(e.errno or 0) or e})", str(path), "check the output path")


# Expected error classes raised below the CLIs (registered by their modules so this
# module needs no import of them): exception type -> exit code.
_EXPECTED: dict[type[BaseException], int] = {}


def register_expected(exc: type[BaseException], code: int = EXIT_INPUT) -> type[BaseException]:
    """Mark an exception class as an expected, one-line failure with ``code``."""
    _EXPECTED[exc] = code
    return exc


# Optional package -> the pyproject extra that installs it. ``pip install dynpose-trt`` installs
# only what running built artifacts needs; a build, eval, Triton, GStreamer or TensorRT command
# run on such an install names the extra to add (exit 3: a required tool is absent).
EXTRAS = {
    "torch": "build",
    "onnx": "build",
    "onnxsim": "build",
    "onnxslim": "build",
    "scipy": "build",
    "pycocotools": "eval",
    "motmetrics": "eval",
    "matplotlib": "eval",
    "tritonclient": "triton",
    "gi": "gst",
    "pycuda": "trt",
    "pytest": "dev",
    "entmax": "dev",
}


def missing_extra(e: BaseException) -> IncompleteRun | None:
    """A ModuleNotFoundError of an optional package as one line naming its extra, else None."""
    root = (getattr(e, "name", None) or "").split(".")[0] if isinstance(e, ModuleNotFoundError) else ""
    if root not in EXTRAS:
        return None
    extra = EXTRAS[root]
    return IncompleteRun(
        f"python package {root} is not installed",
        f"the {extra} extra",
        f"pip install 'dynpose-trt[{extra}]' (in a clone: pip install -e '.[{extra}]')",
    )


def missing_extra_hook() -> None:
    """Make an import-time ModuleNotFoundError of an optional package one line and exit 3.

    Why a hook: ``python -m build.engines`` imports onnx/torch at module level, before
    :func:`guarded` runs; the command packages (build, calib, bench, tools) install it on import.
    Anything else keeps the previous hook (``--debug`` too).
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], e: BaseException, tb: TracebackType | None) -> None:
        line = missing_extra(e)
        if line is None or DEBUG_FLAG in sys.argv or os.environ.get("DYNPOSE_DEBUG") == "1":
            previous(kind, e, tb)
            return
        print(f"error: {line}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(line.code)  # the interpreter would exit 1 (internal error) after a hook returns

    if not getattr(previous, "dynpose_extras", False):  # once, whichever package came first
        hook.dynpose_extras = True  # type: ignore[attr-defined]
        sys.excepthook = hook


def _expected_code(e: BaseException) -> int | None:
    if isinstance(e, UserError):
        return e.code
    for cls in type(e).__mro__:
        if cls in _EXPECTED:
            return _EXPECTED[cls]
    return None


def _message(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    return msg[6:].lstrip() if msg.startswith("error:") else msg


def split_debug(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """Take ``--debug`` out of argv (every command accepts it); env DYNPOSE_DEBUG=1 does the same."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("DYNPOSE_DEBUG") == "1"
    return [a for a in args if a != DEBUG_FLAG], debug


def guarded(
    main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, prog: str | None = None
) -> int:
    """Run a CLI body; turn every exception into one line and an exit code.

    ``main`` receives argv without ``--debug``. With ``--debug`` the traceback is
    printed as well (and unexpected errors are re-raised for a debugger).
    """
    args, debug = split_debug(argv)
    name = prog or os.path.basename(sys.argv[0] or "dynpose")
    try:
        rc = main(args)
        return EXIT_OK if rc is None else int(rc)
    except SystemExit as e:  # argparse (2) and explicit exits keep their code
        code = e.code
        if isinstance(code, str):
            print(code if code.startswith("error:") else f"error: {code}", file=sys.stderr)
            return EXIT_INPUT
        return EXIT_OK if code is None else int(code)
    except KeyboardInterrupt:
        print("interrupted: outputs closed; everything written so far is valid", file=sys.stderr)
        return EXIT_SIGINT
    except BaseException as e:  # noqa: BLE001 - the boundary is the point
        code = _expected_code(e)
        extra = missing_extra(e) if code is None else None  # a lazy import of an optional package
        if extra is not None:
            e, code = extra, extra.code
        if code is None and isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            # a copy's or rename's second name is the file being written
            e, code = output_error(e, e.filename2 or e.filename or "output"), EXIT_OUTPUT
        if debug:
            traceback.print_exc()
        if code is not None:
            print(f"error: {_message(e)}", file=sys.stderr)
            return code
        if debug:
            raise
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
        print(
            f"internal error in {name}: {type(e).__name__}: {_message(e)}{at}; "
            f"rerun with {DEBUG_FLAG} for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
