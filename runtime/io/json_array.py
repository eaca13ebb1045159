"""A JSON list that grows on disk and is valid JSON after every append.

Why: COCO results must be one JSON list (pycocotools reads nothing else), yet
a kill mid-run must keep every finished image, and rewriting the whole list
after each image is quadratic I/O on COCO val. So the file always reads
``[rec, rec, ...]`` + ``]``: an append overwrites the closing ``]`` with the
new records and a fresh ``]`` in one checked write, so total I/O is linear.
If the write fails part-way (disk full) the closing bracket is put back over
bytes that are already allocated and the file is cut there: it stays the
valid list of every record appended before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.errors import output_error
from runtime.io.records import strict_dumps
from runtime.safe_io import write_at

_CLOSE = b"]\n"


class JsonArrayWriter:
    """Open (truncating: never a stale file), append batches, close; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise output_error(e, self.path) from None
        self._tail = 1  # offset of the closing ']'
        self.count = 0
        write_at(self._fd, b"[" + _CLOSE, 0, self.path, restore_size=0)

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (strict JSON: NaN/inf are refused, map them to null first)."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        parts = [strict_dumps(r) for r in records]
        if not parts:
            return
        body = ("\n" if self.count == 0 else ",\n") + ",\n".join(parts)
        data = body.encode() + _CLOSE
        try:
            write_at(self._fd, data, self._tail, self.path)
        except Exception:
            # Bytes at _tail.._tail+2 were the old "]\n": allocated, so this rewrite needs no space.
            try:
                os.pwrite(self._fd, _CLOSE, self._tail)
                os.ftruncate(self._fd, self._tail + len(_CLOSE))
            except OSError:
                pass
            raise
        self._tail += len(body)
        self.count += len(parts)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonArrayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
