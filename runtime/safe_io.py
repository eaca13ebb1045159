"""Checked writes: a write either lands in full or the file is put back as it was.

Why: ``os.write``/``os.pwrite`` may write fewer bytes than asked (disk full, a
file-size limit) and only the *next* call raises. Ignoring the count leaves a
partial JSON line or an AVI header that counts a frame that is not on disk.
Every output of the runtime goes through :func:`write_at` or
:func:`atomic_write_text`, which turn any failure into one
:class:`~runtime.errors.OutputError` (exit 4). Whole files that a command
overwrites (summaries, reports, plots, PNGs: build, bench and tools too) go
through :func:`atomic_write_bytes`, so a failed rewrite keeps the previous
file; folders of files that belong together use ``build.staging.StagedDir``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from runtime.errors import OutputError, output_error


class ShortWrite(OSError):
    """The kernel took fewer bytes than asked and then refused the rest."""


def write_at(fd: int, data: bytes, offset: int, path: object, restore_size: int | None = None) -> None:
    """Write all of ``data`` at ``offset``; on failure truncate to ``restore_size`` (if given) and raise."""
    view = memoryview(data)
    pos = offset
    try:
        while view:
            n = os.pwrite(fd, view, pos)
            if n <= 0:
                raise ShortWrite(28, "no bytes written (disk full?)")
            view, pos = view[n:], pos + n
    except OSError as e:
        if restore_size is not None:
            try:
                os.ftruncate(fd, restore_size)  # shrinking needs no space
            except OSError:
                pass
        raise output_error(e, path) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small file whole or not at all (temp sibling + rename); the temp is removed on failure."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` replaces ``path`` whole or not at all; an error names ``path`` (exit 4)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise output_error(e, path) from None
    try:
        try:
            write_at(fd, data, 0, path)
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(e, path) from None
        raise


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` (contents and times); a failed write names ``dst``, not the source."""
    try:
        shutil.copy2(src, dst)
    except OSError as e:
        if e.errno == errno.ENOENT and e.filename == str(src):  # the source is gone: not an output problem
            raise
        raise output_error(e, dst) from None


def set_aside_earlier(out: Path, name: str, pattern: re.Pattern[str]) -> Path | None:
    """Move the files of ``out`` whose names match ``pattern`` (an earlier run's outputs) into
    ``out/<name>.previous/``, saying so in one line; None when there are none.

    Why aside and not deleted: a rerun streams into the same names (valid after any kill), so
    until it has ended well the earlier results are the only complete ones; a run that fails
    (full disk, dead server) leaves them there, named. :func:`drop_earlier_outputs` removes them
    once the run has ended without an error. Renames within ``out``: no space needed.
    """
    prev = out / f"{name}.previous"
    try:
        found = [
            p
            for p in (sorted(out.iterdir()) if out.is_dir() else [])
            if pattern.fullmatch(p.name) and (p.is_file() or p.is_symlink())
        ]
        if not found:
            return None
        if prev.is_dir() and not prev.is_symlink():  # two runs back: only the last complete one is kept
            shutil.rmtree(prev)
        elif prev.exists() or prev.is_symlink():
            prev.unlink()
        prev.mkdir()
        for p in found:
            os.replace(p, prev / p.name)
    except OSError as e:
        raise output_error(e, prev) from None
    print(
        f"note: moved {len(found)} output(s) of an earlier run for {name} to {prev}/ "
        f"({', '.join(p.name for p in found)}); removed when this run ends without an error",
        file=sys.stderr,
    )
    return prev


def drop_earlier_outputs(prev: Path | None) -> None:
    """The run ended without an error: its own outputs stand, the set-aside ones go."""
    if prev is not None:
        shutil.rmtree(prev, ignore_errors=True)
