"""The shared error boundary: one line, the documented code, traceback only with --debug."""

from __future__ import annotations

import argparse
import errno

import pytest

from runtime.cli import args as cli_args
from runtime.errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OUTPUT,
    EXIT_SIGINT,
    InputError,
    guarded,
    register_expected,
)


class _Custom(RuntimeError):
    pass


register_expected(_Custom, 3)


@pytest.mark.parametrize(
    "exc, code, needle",
    [
        (
            InputError("bad box", "dets.json record 3 field bbox", "give 4 numbers"),
            EXIT_INPUT,
            "error: bad box (dets.json record 3 field bbox): give 4 numbers",
        ),
        (_Custom("error: camera gone"), 3, "error: camera gone"),
        (OSError(errno.ENOSPC, "No space left on device", "/x/out.jsonl"), EXIT_OUTPUT, "no space left"),
        (ZeroDivisionError("boom"), EXIT_INTERNAL, "rerun with --debug"),
        (KeyboardInterrupt(), EXIT_SIGINT, "interrupted"),
    ],
)
def test_one_line_and_code(exc, code, needle, capsys):
    def main(argv):
        raise exc

    assert guarded(main, []) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_debug_prints_the_traceback_and_is_stripped(capsys):
    seen = []

    def main(argv):
        seen.append(argv)
        raise InputError("bad")

    assert guarded(main, ["--x", "--debug"]) == EXIT_INPUT
    assert seen == [["--x"]]
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        guarded(lambda argv: 1 / 0, ["--debug"])


def test_argparse_exit_code_passes_through(capsys):
    def main(argv):
        p = argparse.ArgumentParser()
        p.add_argument("--p", type=cli_args.percent)
        p.parse_args(argv)

    assert guarded(main, ["--p", "150"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert guarded(main, ["--p", "nan"]) == 2


def test_path_types(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert cli_args.existing_file(str(f)) == f
    with pytest.raises(argparse.ArgumentTypeError):
        cli_args.existing_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError):
        cli_args.output_dir(str(f))
    with pytest.raises(argparse.ArgumentTypeError):
        cli_args.output_file(str(tmp_path))
    assert cli_args.output_dir(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
