"""Full batches across frames (runtime.pose.batching): each frame gets back exactly its rows, in
order, whichever batch they ran in; nothing waits past the collection of its frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measure.workload import load_frames
from runtime.backends.base import Outputs, Pending
from runtime.pose.batching import BatchFiller, copy_rows
from runtime.pose.pipeline import PipelineOptions, PosePipeline


class _Done(Pending):
    """A batch that 'ran' at once: its output is its input, tagged with the launch number."""

    def __init__(self, batch: np.ndarray, launch: int) -> None:
        self.out = {"x": np.array(batch), "launch": np.full(len(batch), launch)}
        self.elapsed_ms = 10.0 * len(batch)
        self.waits = 0

    def wait(self) -> Outputs:
        self.waits += 1
        return self.out


class _Net:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.pendings: list[_Done] = []

    def __call__(self, batch: np.ndarray) -> Pending:
        self.sizes.append(len(batch))
        self.pendings.append(_Done(batch, len(self.sizes) - 1))
        return self.pendings[-1]


def _rows(frame: int, n: int) -> np.ndarray:
    """n rows, each holding (frame, row index): what comes back says where it came from."""
    return np.stack([np.full(n, frame), np.arange(n)], axis=1).astype(np.float32)


def _got(parts: list[tuple[Pending, int]]) -> np.ndarray:
    outs = [p.wait()["x"] for p, _ in parts]
    assert [len(o) for o in outs] == [n for _, n in parts]
    return np.concatenate(outs) if outs else np.empty((0, 2), np.float32)


def test_half_batches_of_consecutive_frames_run_as_full_batches() -> None:
    net = _Net()
    filler = BatchFiller(net, 8, (2,))
    parts = [filler.add(4, copy_rows(_rows(f, 4))) for f in range(4)]
    assert net.sizes == [8, 8] and filler.held_rows == 0
    for f, p in enumerate(parts):
        np.testing.assert_array_equal(_got(p), _rows(f, 4))
    # frames 0 and 1 shared batch 0: it was waited once however many frames read it
    assert net.pendings[0].waits == 1


def test_a_held_remainder_runs_when_its_frame_is_collected() -> None:
    net = _Net()
    filler = BatchFiller(net, 8, (2,))
    first = filler.add(11, copy_rows(_rows(0, 11)))  # one full batch now, 3 rows held
    assert net.sizes == [8] and filler.held_rows == 3 and filler.holds(first)
    second = filler.add(2, copy_rows(_rows(1, 2)))  # still short of a batch: held
    assert net.sizes == [8] and filler.held_rows == 5
    np.testing.assert_array_equal(_got(first), _rows(0, 11))  # collecting frame 0 launches the 5
    assert net.sizes == [8, 5] and not filler.holds(second)
    np.testing.assert_array_equal(_got(second), _rows(1, 2))


def test_hold_false_launches_everything_now() -> None:
    net = _Net()
    filler = BatchFiller(net, 8, (2,))
    filler.add(3, copy_rows(_rows(0, 3)))
    parts = filler.add(10, copy_rows(_rows(1, 10)), hold=False)
    assert net.sizes == [8, 5] and filler.held_rows == 0  # 3 held + 5 new, then the last 5
    np.testing.assert_array_equal(_got(parts), _rows(1, 10))


def test_each_frame_gets_its_share_of_a_shared_batch_time() -> None:
    net = _Net()
    filler = BatchFiller(net, 8, (2,))
    a, b = filler.add(6, copy_rows(_rows(0, 6))), filler.add(2, copy_rows(_rows(1, 2)))
    for p, _ in a + b:
        p.wait()
    assert net.sizes == [8]
    # 80 ms for the batch of 8: 60 for frame 0's six rows, 20 for frame 1's two
    assert sum(p.elapsed_ms for p, _ in a) == pytest.approx(60.0)  # type: ignore[attr-defined]
    assert sum(p.elapsed_ms for p, _ in b) == pytest.approx(20.0)  # type: ignore[attr-defined]


class _Slow(Pending):
    """A batch still 'running' until waited: it reads its input only then, so an input buffer
    reused before the wait would show up as the wrong rows."""

    def __init__(self, batch: np.ndarray) -> None:
        self.batch = batch  # a view of the filler's buffer, not a copy

    def wait(self) -> Outputs:
        return {"x": np.array(self.batch)}


def test_a_batch_buffer_is_reused_only_after_its_batch_was_waited() -> None:
    launched: list[_Slow] = []

    def net(batch: np.ndarray) -> Pending:
        launched.append(_Slow(batch))
        return launched[-1]

    filler = BatchFiller(net, 4, (2,))
    frames = [filler.add(n, copy_rows(_rows(f, n))) for f, n in enumerate((4, 4, 4))]
    assert filler.buffers == 3  # three batches in flight: three buffers, none shared
    for f, parts in enumerate(frames):
        np.testing.assert_array_equal(_got(parts), _rows(f, 4))
    for f in range(3, 13):  # waited as they go: the pool serves every later batch
        np.testing.assert_array_equal(_got(filler.add(4, copy_rows(_rows(f, 4)))), _rows(f, 4))
    assert filler.buffers == 3


@settings(max_examples=200, deadline=None)
@given(
    step=st.integers(1, 9),
    frames=st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.booleans()), min_size=1, max_size=8),
)
def test_any_sequence_of_frames_gets_its_own_rows_back(step, frames) -> None:
    """Any frame sizes, holding or not, collected early or late: every row comes back to its
    frame in order, every row runs exactly once, and no batch exceeds the step."""
    net = _Net()
    filler = BatchFiller(net, step, (2,))
    submitted = []
    for f, (n, hold, collect_now) in enumerate(frames):
        parts = filler.add(n, copy_rows(_rows(f, n)), hold=hold)
        if collect_now:
            np.testing.assert_array_equal(_got(parts), _rows(f, n))
        submitted.append((f, n, parts))
    for f, n, parts in submitted:
        np.testing.assert_array_equal(_got(parts), _rows(f, n))
    assert sum(net.sizes) == sum(n for n, _, _ in frames) and max(net.sizes, default=0) <= step
    assert filler.held_rows == 0


@pytest.fixture(scope="module")
def coco_frames(coco_mini):
    """coco-mini's 4 photos with their detector boxes (8 or more each)."""
    return [(f.image, f.boxes, f.scores) for f in load_frames(coco_mini)]


def _expected_batches(counts: list[int], step: int) -> list[int]:
    """The rule, written out for run_many (frame t is collected right after frame t+1 is
    submitted): rows short of a batch wait; the next frame's rows top them up; whatever of
    frame t is still waiting when frame t is collected runs then, as a short batch."""
    held: list[int] = []  # the frame of each waiting row
    sizes: list[int] = []
    for t, c in enumerate([*counts, 0]):
        rows = [t] * c if t < len(counts) else []
        while len(held) + len(rows) >= step:
            take = step - len(held)
            sizes.append(step)
            held, rows = [], rows[take:]
        held += rows
        if held and held[0] <= t - 1:  # collecting frame t-1 (after the loop: the last frame)
            sizes.append(len(held))
            held = []
    return sizes


def _sizes(pipe: PosePipeline) -> list[tuple[str, int]]:
    """Record every pose-net batch the pipeline launches (role, rows)."""
    seen: list[tuple[str, int]] = []
    for role in ("small", "large"):
        runner = pipe.runners[role]
        orig = runner.infer_async

        def spy(batch, stream, role=role, orig=orig):  # noqa: ANN001, ANN202
            seen.append((role, len(batch)))
            return orig(batch, stream)

        runner.infer_async = spy  # type: ignore[method-assign]
    return seen


def test_run_many_fills_batches_across_frames_with_the_same_results(cpu_artifacts, coco_frames) -> None:
    """dyn splits each frame's 8 boxes between the nets; pipelined, the halves of consecutive
    frames run as full batches of 8, and every result equals the unfilled run's."""
    frames = [(img, b[:8], s[:8]) for img, b, s in coco_frames]
    got = {}
    for fill in (False, True):
        with PosePipeline(
            cpu_artifacts, PipelineOptions(policy="dyn", backend="ort", max_batch=8, fill_batches=fill)
        ) as pipe:
            seen = _sizes(pipe)
            got[fill] = (list(pipe.run_many(frames)), seen)
    (plain, plain_sizes), (filled, filled_sizes) = got[False], got[True]
    for a, b in zip(plain, filled):
        np.testing.assert_array_equal(a.route, b.route)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)
        np.testing.assert_allclose(a.presence, b.presence, atol=1e-4)
    for role, flag in (("small", 0), ("large", 1)):
        counts = [int((r.route == flag).sum()) for r in plain]
        assert [n for r, n in plain_sizes if r == role] == [c for c in counts if c]  # a batch per frame
        assert [n for r, n in filled_sizes if r == role] == _expected_batches(counts, 8), counts
    assert len(filled_sizes) < len(plain_sizes)
    # pipelined, a net has at most: a batch filling, one launched for frame t+1, one for frame t
    assert all(f.buffers <= 3 for f in pipe._fillers.values()), {
        r: f.buffers for r, f in pipe._fillers.items()
    }


def test_a_single_call_holds_nothing_back(cpu_artifacts, coco_frames) -> None:
    img, boxes, scores = coco_frames[0]
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort", max_batch=8)) as pipe:
        job = pipe._submit_views([(img, boxes[:5], scores[:5])])
        assert all(f.held_rows == 0 for f in pipe._fillers.values())
        assert len(pipe._collect(job)) == 5
