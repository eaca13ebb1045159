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
    """One launched batch, waited once however many frames hold rows in it."""

    def __init__(self, pending: Pending, rows: int) -> None:
        self.pending, self.rows = pending, rows
        self._out: Outputs | None = None

    def wait(self) -> Outputs:
        if self._out is None:
            self._out = self.pending.wait()
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


class BatchFiller:
    """One net's crops, launched ``step`` at a time; a remainder is held until more rows come
    (``add``) or one of its frames is collected (``flush``).

    ``launch`` enqueues one batch on the net's stream and returns its :class:`Pending`. ``add``
    takes ownership of the array it is given (the scheduler hands over a fresh array per frame:
    boolean-indexed router crops or crops made for this net), so held rows are kept as views, not
    copied; the one copy is the concatenation that makes a held batch contiguous.
    """

    def __init__(self, launch: Callable[[np.ndarray], Pending], step: int) -> None:
        self.launch, self.step = launch, max(1, step)
        self._held: list[tuple[np.ndarray, RowSlice]] = []

    @property
    def held_rows(self) -> int:
        return sum(len(a) for a, _ in self._held)

    def holds(self, parts: list[tuple[Pending, int]]) -> bool:
        """Whether any of these parts is still held here (not launched yet)."""
        return any(isinstance(p, RowSlice) and p.batch is None for p, _ in parts)

    def add(self, crops: np.ndarray, hold: bool = True) -> list[tuple[Pending, int]]:
        """Queue a frame's crops; returns its parts in row order (``(pending, rows)``). With
        ``hold=False`` nothing is kept back: every row is launched now."""
        parts: list[tuple[Pending, int]] = []
        i = 0
        # top up the held rows to one full batch first
        if self._held and len(crops):
            take = min(self.step - self.held_rows, len(crops))
            s = RowSlice(self, take)
            self._held.append((crops[:take], s))
            parts.append((s, take))
            i = take
        if self.held_rows >= self.step or not hold:
            self.flush()
        while len(crops) - i >= self.step or (not hold and i < len(crops)):
            n = min(self.step, len(crops) - i)
            s = RowSlice(self, n)
            s.bind(_Launched(self.launch(crops[i : i + n]), n), 0)
            parts.append((s, n))
            i += n
        if i < len(crops):
            s = RowSlice(self, len(crops) - i)
            self._held.append((crops[i:], s))
            parts.append((s, s.n))
        return parts

    def flush(self) -> None:
        """Launch the held rows now, as one batch (at most ``step`` rows)."""
        if not self._held:
            return
        held, self._held = self._held, []
        rows = sum(len(a) for a, _ in held)
        batch = held[0][0] if len(held) == 1 else np.concatenate([a for a, _ in held])
        launched = _Launched(self.launch(batch), rows)
        start = 0
        for a, s in held:
            s.bind(launched, start)
            start += len(a)
