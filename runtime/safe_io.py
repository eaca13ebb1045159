"""Checked writes: a write either lands in full or the file is put back as it was.

Why: ``os.write``/``os.pwrite`` may write fewer bytes than asked (disk full, a
file-size limit) and only the *next* call raises. Ignoring the count leaves a
partial JSON line or an AVI header that counts a frame that is not on disk.
Every output of the runtime goes through :func:`write_at` or
:func:`atomic_write_text`, which turn any failure into one
:class:`~runtime.errors.OutputError` (exit 4).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError, output_error


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
                os.ftruncate(fd, restore_size)   # shrinking needs no space
            except OSError:
                pass
        raise output_error(e, path) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small file whole or not at all (temp sibling + rename); the temp is removed on failure."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise output_error(e, path) from None
    try:
        try:
            write_at(fd, text.encode(), 0, path)
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
