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

Folders that grow rather than get replaced (a Triton repository gaining a
version, a clip written into a folder that holds other files) stage only the
new files; with ``merge=True`` the commit hard-links every entry of the old
folder that the staged one lacks into it before the swap (no data copied,
and no writer ever writes through a link into the live folder). Several
folders that belong together (artifacts and their Triton repository) go in
with :func:`commit_together`: all swapped, or the swapped ones swapped back.
A write that fails inside a staged folder is reported as one OutputError
naming the file under its final name, not the hidden staging path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from runtime.errors import EXIT_SIGTERM, OutputError, output_error, register_expected

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_TAG = ".staging-"


class BuildTerminated(BaseException):
    """SIGTERM arrived during a build (a BaseException so no ``except Exception`` swallows it)."""

    def __str__(self) -> str:
        return (
            "terminated (SIGTERM): the build stopped, its staging folder is removed and the previous "
            "artifacts are untouched: rerun the build to finish it"
        )


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
            pid = int(d.name[len(f".{final.name}{_TAG}") :].split("-")[0])
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


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)  # another file system inside the folder, or no hard links here


def _link_missing(old: Path, new: Path, replace: tuple[str, ...] = ()) -> None:
    """Hard-link every entry of ``old`` that ``new`` lacks into ``new`` (folders merged recursively)."""
    for entry in os.scandir(old):
        if entry.name in replace:
            continue
        target = new / entry.name
        if entry.is_dir(follow_symlinks=False):
            if not os.path.lexists(target):
                shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
            elif target.is_dir() and not target.is_symlink():
                _link_missing(Path(entry.path), target)
        elif not os.path.lexists(target):  # a staged file of the same name wins
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            else:
                _link_or_copy(entry.path, str(target))


class StagedDir:
    """``with StagedDir(final) as st: build into st.path; st.commit()``; no commit -> nothing changes.

    ``merge``: keep the old folder's entries the staged one lacks (see the module docstring);
    ``replace``: top-level names the staged folder owns whole (not merged, an earlier run's
    extra files in them go).
    """

    def __init__(self, final: str | Path, merge: bool = False, replace: tuple[str, ...] = ()) -> None:
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}{_TAG}{os.getpid()}-{secrets.token_hex(4)}"
        self.merge, self.replace = merge, tuple(replace)
        self.committed = False
        self._old: dict[int, object] = {}
        self._swap: str | None = None  # how commit put it in place: exchange, renames, new

    def __enter__(self) -> StagedDir:
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.final)
            self.path.mkdir()
        except OSError as e:
            raise output_error(e, self.final) from None
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
        return commit_together(self)[0]

    def _prepare(self) -> None:
        for signum in sorted(_STOPPED):
            _raise_stop(signum)
        if self.final.exists() and not self.final.is_dir():
            raise OutputError(
                "exists and is not a folder", str(self.final), "remove it or choose another path"
            )
        if self.merge and self.final.is_dir():
            _link_missing(self.final, self.path, self.replace)
        _fsync_tree(self.path)

    def _put_in_place(self) -> None:
        if not self.final.exists():
            os.rename(self.path, self.final)
            self._swap = "new"
        elif _exchange(self.path, self.final):
            self._swap = "exchange"  # self.path now holds the previous folder
        else:
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(self.final, old)
            try:
                os.rename(self.path, self.final)
            except BaseException:
                os.rename(old, self.final)  # the previous folder goes back where it was
                raise
            self.path, self._swap = old, "renames"

    def _take_back(self) -> None:
        """Undo _put_in_place (a folder committed with it could not go in)."""
        if self._swap == "new":
            os.rename(self.final, self.path)
        elif self._swap == "exchange":
            _exchange(self.path, self.final)
        elif self._swap == "renames":  # self.path holds the previous folder
            staged = self.final.parent / f".{self.final.name}{_TAG}{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(self.final, staged)
            os.rename(self.path, self.final)
            self.path = staged
        self._swap = None

    def public(self, text: str) -> str:
        """``text`` with the staging path read as the final one (what a user knows)."""
        return text.replace(str(self.path), str(self.final))

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self.committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            for signum, handler in self._old.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
        if isinstance(e, OutputError) and e.where and str(self.path) in e.where:
            raise OutputError(e.what, self.public(e.where), e.fix) from None
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            # the file being written, under its final name (a copy's source is e.filename)
            names = [str(f) for f in (e.filename2, e.filename) if f is not None]
            inside = [f for f in names if str(self.path) in f]
            if inside or (not names and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)):
                raise output_error(e, self.public(inside[0] if inside else str(self.final))) from None


def commit_together(*stages: StagedDir) -> list[Path]:
    """Put every staged folder in place, or none: a swap that fails swaps the earlier ones back.

    Why: ``build.engines --triton-repo`` makes an artifacts folder and a repository that
    serves it; one without the other is a half-finished build. The slow, space-hungry parts
    (merging links, fsync) run for all before the first swap; the swaps are renames.
    """
    for st in stages:
        st._prepare()
    done: list[StagedDir] = []
    try:
        for st in stages:
            st._put_in_place()
            done.append(st)
    except BaseException:
        for st in reversed(done):
            st._take_back()
        raise
    for st in stages:
        st.committed = True
        shutil.rmtree(st.path, ignore_errors=True)  # after a swap this holds the previous folder
    return [st.final for st in stages]


_STOPPED: set[int] = set()  # SIGINT / SIGTERM seen by this process (see StagedDir._on_signal)


def _raise_stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise BuildTerminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
