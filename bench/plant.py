"""Planted regressions for proving the gates (a pytest plugin: ``-p bench.plant``).

``DYNPOSE_PLANT=scheduler`` makes the scheduler's own code (``PosePipeline._submit_views``,
the main thread) do extra CPU work proportional to the frame's crops: a fraction
``DYNPOSE_PLANT_FRACTION`` (default 0.3) of what the two pose nets cost per crop,
measured on this pipeline's own runners in process CPU time. That is what a real
scheduler regression looks like (more Python per crop competing with the nets for
the cores); a sleep would hide behind the pipelined nets of the next frame.
``DYNPOSE_PLANT=decode`` makes ``decode_probmaps`` (in ``runtime.heads.decode`` and as the
head decoders imported it; the C++ build behind it) do that fraction of its own thread CPU time
again.
``DYNPOSE_PLANT=preprocess`` makes every ``runtime.pose.preprocess.CropMaker`` call (the
crops of the pipeline and of bench/bench_preprocess.py) do that fraction of its own process
CPU time again (process clock: OpenCV may warp on its worker threads).
``DYNPOSE_PLANT=regions`` does the same to ``calibrated_regions`` (blur and selection, the C++
build behind it; in ``runtime.heads.credible`` and as ``runtime.heads.probfields`` imported it),
on the process CPU clock its gate reads.

CPU work is burnt on the thread CPU clock, so the planted cost is the same amount of
work whatever the load, like real code. Nothing here runs unless the plugin is loaded
(only tests/test_gates.py loads it, in a child pytest); monkeypatch undoes it per test.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest


def burn(cpu_seconds: float) -> None:
    """Spin until this thread has used ``cpu_seconds`` more CPU time."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass


def _net_cpu_per_crop(pipe) -> float:
    """Mean process CPU seconds per crop of the small and large nets (4 zero crops each)."""
    costs = []
    for role in ("small", "large"):
        x = np.zeros((4, 3, *pipe.input_hw[role]), np.float32)  # each net at its own crop size
        pipe.runners[role].infer(x, pipe.streams[role])
        t = time.process_time()
        pipe.runners[role].infer(x, pipe.streams[role])
        costs.append((time.process_time() - t) / len(x))
    return sum(costs) / len(costs)


def _slowed(fast, frac: float, clock=time.process_time):
    """``fast`` that then burns ``frac`` of the CPU time it took, on ``clock``."""

    def slow(*a, **k):
        t = clock()
        out = fast(*a, **k)
        burn(frac * (clock() - t))
        return out

    return slow


def _plant_regions(monkeypatch: pytest.MonkeyPatch, frac: float) -> None:
    """The calibrated regions (``calibrated_regions``: the C++, or the numpy references where it
    is not built) do ``frac`` of their own CPU time again; the gates' frozen yardsticks do not."""
    from runtime.heads import credible as CR
    from runtime.heads import probfields as PF

    slow = _slowed(CR.calibrated_regions, frac)
    for module in (CR, PF):  # where the regions are defined and where the pipeline calls them
        monkeypatch.setattr(module, "calibrated_regions", slow)


def _plant_decode(monkeypatch: pytest.MonkeyPatch, frac: float) -> None:
    """``decode_probmaps`` (the C++, or the numpy reference where it is not built) does ``frac``
    of its own thread CPU time again; the gates' frozen yardsticks do not."""
    from runtime.heads import decode as D
    from runtime.heads import double_decode as DD
    from runtime.heads import probmap as PM

    slow = _slowed(D.decode_probmaps, frac, time.thread_time)
    for module in (D, PM, DD):  # where the decode is defined and where the head decoders call it
        monkeypatch.setattr(module, "decode_probmaps", slow)


def _plant_preprocess(monkeypatch: pytest.MonkeyPatch, frac: float) -> None:
    from runtime.pose.preprocess import CropMaker

    monkeypatch.setattr(CropMaker, "__call__", _slowed(CropMaker.__call__, frac))


def _plant_scheduler(monkeypatch: pytest.MonkeyPatch, frac: float) -> None:
    from runtime.pose.pipeline import PosePipeline

    submit = PosePipeline._submit_views  # every entry point submits through it

    def slow_submit(self, views, *a, **k):
        if not hasattr(self, "_planted_cpu_per_crop"):
            self._planted_cpu_per_crop = _net_cpu_per_crop(self)
        boxes = sum(len(np.asarray(b).reshape(-1, 4)) for _, b, _ in views)
        burn(frac * boxes * self._planted_cpu_per_crop)
        return submit(self, views, *a, **k)

    monkeypatch.setattr(PosePipeline, "_submit_views", slow_submit)


PLANTS = {
    "scheduler": _plant_scheduler,
    "decode": _plant_decode,
    "preprocess": _plant_preprocess,
    "regions": _plant_regions,
}


@pytest.fixture(autouse=True)
def _planted_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = os.environ.get("DYNPOSE_PLANT", "")
    frac = float(os.environ.get("DYNPOSE_PLANT_FRACTION", "0.3"))
    if kind and kind not in PLANTS:
        raise ValueError(f"DYNPOSE_PLANT={kind!r}: use {', '.join(PLANTS)}")
    if kind:
        PLANTS[kind](monkeypatch, frac)
