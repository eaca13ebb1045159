"""Transactional artifacts folders: a build writes a hidden sibling and swaps it in when done.

Why: the runtime trusts an artifacts folder as a whole (manifest + ONNX +
variants + engines). Writing in place meant a failed rebuild left a mix of
new and old files that the runtime accepted. Here a build writes
``.<name>.staging-<pid>-<rand>`` beside the target and, only after every
stage succeeded, swaps it with the old folder in one ``renameat2
(RENAME_EXCHANGE)`` call (Linux; elsewhere two renames), then deletes the old
one. A failure, SIGINT or SIGTERM removes the staging folder and leaves the
previous artifacts bit-identical. Hand-written because neither the standard
library nor a well-kept package offers an atomic folder swap; ``tempfile``
would put the folder on another file system, where a rename is a copy.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import threading
import sys
from pathlib import Path
from types import FrameType, TracebackType

from runtime.errors import EXIT_SIGTERM, register_expected

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_TAG = ".staging-"


class BuildTerminated(BaseException):
    """SIGTERM arrived during a build (a BaseException so no ``except Exception`` swallows it)."""

    def __str__(self) -> str:
        return ("terminated (SIGTERM): the build stopped, its staging folder is removed and the previous "
                "artifacts are untouched: rerun the build to finish it")


register_expected(BuildTerminated, EXIT_SIGTERM)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(final: Path) -> list[Path]:
    """Delete staging folders of ``final`` left by builds that were killed (-9) and are gone."""
    removed = []
    for d in final.parent.glob(f".{final.name}{_TAG}*"):
        try:
            pid = int(d.name[len(f".{final.name}{_TAG}"):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the kernel or libc cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _fsync_tree(root: Path) -> None:
    """Make the staged files durable before they replace the old ones (a power cut mid-swap)."""
    for d, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(d, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StagedDir:
    """``with StagedDir(final) as st: build into st.path; st.commit()``; no commit -> nothing changes."""

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}{_TAG}{os.getpid()}-{secrets.token_hex(4)}"
        self.committed = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StagedDir":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.final)
        self.path.mkdir()
        self._old = {}
        if _main_thread():
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
            # An inherited SIG_IGN (a background job of a script) stays ignored, as POSIX intends.
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        return self

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        # Remembered as well as raised: code the signal lands in (a library's own
        # ``except BaseException``, e.g. inside an exporter) may swallow the exception, and
        # then commit() still refuses to put a build that was told to stop in place.
        _STOPPED.add(signum)
        _raise_stop(signum)

    def commit(self) -> Path:
        """Swap the staged folder into place; the old folder (if any) is deleted afterwards."""
        for signum in sorted(_STOPPED):
            _raise_stop(signum)
        _fsync_tree(self.path)
        if self.final.exists() and not self.final.is_dir():
            raise NotADirectoryError(f"{self.final} exists and is not a folder")
        if self.final.exists():
            if not _exchange(self.path, self.final):
                old = self.final.parent / f".{self.final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(self.final, old)
                os.rename(self.path, self.final)
                self.path = old
        else:
            os.rename(self.path, self.final)
        self.committed = True
        shutil.rmtree(self.path, ignore_errors=True)   # after a swap this holds the previous build
        return self.final

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if not self.committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            for signum, handler in self._old.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]


_STOPPED: set[int] = set()   # SIGINT / SIGTERM seen by this process (see StagedDir._on_signal)


def _raise_stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise BuildTerminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
