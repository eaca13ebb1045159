"""Full batches across frames: a net's crops wait for the next frame's before they run.

Why: on a CPU a batch of 4 costs more per crop than a batch of 8 (RTMPose-t on ONNX Runtime,
2 threads: about 1.5 % here), and DynPose splits every frame's crops between two nets, so a frame
of 8 people gives each net a half batch. A pipelined caller (``run_many``, ``run_ticks``) already
collects frame t only after frame t+1 is submitted, so the rows of frame t that do not fill a whole
batch can wait for frame t+1's rows and run with them in one full batch, as a Triton dynamic batcher
would. Nothing waits longer than the next submission: the moment a frame is collected, any of its
rows still held are launched (:meth:`BatchFiller.flush`), so a single ``pipe(image, boxes)`` call
behaves as before.

Each frame keeps its own view of a shared batch (:class:`RowSlice`): the rows it put in, in order,
and its share of the batch's measured time for budget mode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runtime.backends.base import Outputs, Pending


class _Launched:
    """One launched batch, waited once however many frames hold rows in it; its input buffer
    goes back to the filler's pool once the net is done with it."""

    def __init__(self, pending: Pending, rows: int, release: Callable[[], None] | None = None) -> None:
        self.pending, self.rows = pending, rows
        self._out: Outputs | None = None
        self._release = release

    def wait(self) -> Outputs:
        if self._out is None:
            try:
                self._out = self.pending.wait()
            finally:
                release, self._release = self._release, None
                if release is not None:
                    release()
        return self._out


class RowSlice(Pending):
    """A frame's rows ``[start, start + n)`` of a batch that is launched now or at the next flush."""

    def __init__(self, filler: BatchFiller, n: int) -> None:
        self.filler, self.n = filler, n
        self.batch: _Launched | None = None
        self.start = 0

    def bind(self, batch: _Launched, start: int) -> None:
        self.batch, self.start = batch, start

    def wait(self) -> Outputs:
        if self.batch is None:  # still held: its frame is being collected, so run it now
            self.filler.flush()
        assert self.batch is not None
        out = self.batch.wait()
        return {k: v[self.start : self.start + self.n] for k, v in out.items()}

    @property
    def elapsed_ms(self) -> float | None:
        """This slice's share of its batch's measured time (None until the batch was waited)."""
        ms = getattr(self.batch.pending, "elapsed_ms", None) if self.batch is not None else None
        return None if ms is None else ms * self.n / self.batch.rows  # type: ignore[union-attr]


WriteRows = Callable[[np.ndarray, int, int], None]
"""``write(out, a, b)``: put a frame's rows ``a..b`` (of the rows it adds) into ``out`` [b-a, ...]."""


def copy_rows(src: np.ndarray, index: np.ndarray | None = None) -> WriteRows:
    """The rows ``src[index]`` (all of ``src`` when None), copied into the filler's buffer.

    Row by row: each row is one contiguous block (a whole crop), and ``np.take(..., out=)`` was
    3x slower than these block copies (1.1 against 0.35 ms for 8 crops of 256x192)."""
    if index is None:
        return lambda out, a, b: np.copyto(out, src[a:b])

    def write(out: np.ndarray, a: int, b: int) -> None:
        for j, row in enumerate(index[a:b].tolist()):
            out[j] = src[row]

    return write


class BatchFiller:
    """One net's input batches, launched ``step`` rows at a time; a remainder is held until more
    rows come (``add``) or one of its frames is collected (``flush``).

    The rows are written once, by the caller's ``write``, straight into a batch buffer taken from
    a pool; a buffer returns to the pool when its batch has been waited (the net is done reading
    it). Why a pool: a fresh array per batch is fresh pages from the kernel every time; at the
    fixture nets' speed the page faults and copies of that cost 0.3 ms of CPU per crop (2,200
    minor faults per 24 crops, issue #29).
    """

    def __init__(
        self, launch: Callable[[np.ndarray], Pending], step: int, row_shape: tuple[int, ...]
    ) -> None:
        self.launch, self.step, self.row_shape = launch, max(1, step), tuple(row_shape)
        self._pool: list[np.ndarray] = []
        self._buf: np.ndarray | None = None  # the batch being filled
        self._held: list[tuple[RowSlice, int]] = []  # its slices and their first row
        self._made = 0

    @property
    def held_rows(self) -> int:
        return sum(s.n for s, _ in self._held)

    @property
    def buffers(self) -> int:
        """Batch buffers made so far (in the pool, filling or in flight)."""
        return self._made

    def holds(self, parts: list[tuple[Pending, int]]) -> bool:
        """Whether any of these parts is still held here (not launched yet)."""
        return any(isinstance(p, RowSlice) and p.batch is None for p, _ in parts)

    def _take(self) -> np.ndarray:
        if self._pool:
            return self._pool.pop()
        self._made += 1
        return np.empty((self.step, *self.row_shape), np.float32)

    def add(self, rows: int, write: WriteRows, hold: bool = True) -> list[tuple[Pending, int]]:
        """Queue a frame's ``rows`` (``write`` puts them in place); returns its parts in row order
        (``(pending, rows)``). With ``hold=False`` nothing is kept back: every row is launched now."""
        parts: list[tuple[Pending, int]] = []
        i = 0
        while i < rows:
            if self._buf is None:
                self._buf = self._take()
            at = self.held_rows
            n = min(self.step - at, rows - i)
            write(self._buf[at : at + n], i, i + n)
            s = RowSlice(self, n)
            self._held.append((s, at))
            parts.append((s, n))
            i += n
            if at + n == self.step:
                self.flush()
        if not hold:
            self.flush()
        return parts

    def flush(self) -> None:
        """Launch the held rows now, as one batch (at most ``step`` rows)."""
        if not self._held:
            return
        buf, rows = self._buf, self.held_rows
        assert buf is not None
        held, self._held, self._buf = self._held, [], None
        launched = _Launched(self.launch(buf[:rows]), rows, lambda: self._pool.append(buf))
        for s, start in held:
            s.bind(launched, start)
