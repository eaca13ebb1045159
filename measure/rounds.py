"""Interleaved repeated timing and paired-round ratio statistics for the bench/ gates.

Why by hand: pytest-benchmark times one callable per test, each test at a
different moment, and reports per-callable statistics; a gated *ratio* needs
its two sides timed in the same round, side by side, so that a burst of load
from another process lands on both. That pairing is the whole point here, and
no library we use offers it, so it is a few lines of our own.

A round times every part once. Parts run in a fixed order in even rounds and
in reverse order in odd rounds (ABC, CBA, ...), so a load ramp during a round
does not always fall on the same part. ``warmup`` whole rounds run first and
are discarded (first ORT runs allocate, caches are cold).

A gate then reads, for a ratio A/B, the **median of the per-round ratios**
A_i/B_i (never a ratio of separately taken medians or minima), with the
quartiles and min/max of those per-round ratios as its spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# The round machinery itself lives in runtime.pose.costs (the device re-measures its routing
# costs with it, and runtime imports nothing from here); the bench gates use it through here.
from runtime.pose.costs import interleaved_clocks


def interleaved(
    parts: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    clock: str | Mapping[str, str] = "wall",
    on_result: Callable[[str, object], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per part per round, ``rounds`` measured rounds after ``warmup`` discarded ones.

    ``clock`` is one clock name for all parts or a per-part mapping (see :data:`CLOCKS`).
    ``on_result(name, value)`` sees every measured part's return value (for checks).
    """
    names = list(parts)
    per_part = {n: clock if isinstance(clock, str) else clock[n] for n in names}
    both = interleaved_clocks(parts, rounds, warmup, tuple(sorted(set(per_part.values()))), on_result)
    return {n: both[per_part[n]][n] for n in names}


@dataclass(frozen=True)
class Spread:
    """Median and spread of per-round values (ratios, or rates)."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        v = sorted(float(x) for x in values)
        if not v:
            raise ValueError("no rounds to summarise")
        if len(v) == 1:
            q1 = q3 = v[0]
        else:
            q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
        return cls(statistics.median(v), q1, q3, v[0], v[-1], len(v))

    @property
    def rel_iqr(self) -> float:
        """(Q3 - Q1) / median: the noise left after pairing, as a fraction."""
        return (self.q3 - self.q1) / self.median if self.median else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.lo,
            "max": self.hi,
            "rounds": self.n,
        }

    def text(self, fmt: str = ".3f") -> str:
        return (
            f"IQR {self.q1:{fmt}}-{self.q3:{fmt}}, min/max {self.lo:{fmt}}/{self.hi:{fmt}}, {self.n} rounds"
        )


def paired(per_round: Sequence[float]) -> Spread:
    """Spread of a sequence already made of one paired value per round."""
    return Spread.of(per_round)


def ratio_rounds(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Per-round ratios num_i / den_i of two parts timed in the same rounds."""
    if len(num) != len(den):
        raise ValueError(f"unpaired rounds: {len(num)} vs {len(den)}")
    return [a / b for a, b in zip(num, den)]


def ratio_round_pairs(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Ratios of sums over consecutive round pairs (0+1, 2+3, ...; an odd last round is dropped).

    Why: rounds run in order ABC then CBA, so which part runs right before a part alternates
    with the round's parity. Two parts that run the same code can still differ by what ran
    before them (the allocator's free lists, the caches): measured on the decode against its
    frozen copy, 12.3 ms after the copy in even rounds and 9.5 ms after the probe in odd
    rounds, while the copy took ~10.5 ms in both. Per-round ratios then fall in two bands and
    their median jumps between them from run to run; one even and one odd round together
    expose both sides to both orders, so the order cancels inside every value.
    """
    if len(num) != len(den):
        raise ValueError(f"unpaired rounds: {len(num)} vs {len(den)}")
    if len(num) < 2:
        raise ValueError(f"round pairs need at least 2 rounds, got {len(num)}")
    return [(num[i] + num[i + 1]) / (den[i] + den[i + 1]) for i in range(0, len(num) - 1, 2)]
