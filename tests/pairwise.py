"""A small greedy all-pairs (pairwise covering array) generator for the combination matrix.

Why our own: no covering-array library is installed here, and the job is ~40
lines; a dependency for it would also have to be pinned and audited. The
algorithm is deterministic (no random restarts), so the table in
tests/test_combo_matrix.py can be checked against it: start each new run from
the first pair still uncovered, then give every other factor, in order, the
value that covers the most still-uncovered pairs with the values already
chosen (ties: the first value), never a value the constraint refuses. Not
minimal in general, but within a run or two of it for factor sizes like ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

Row = dict[str, Any]
Allowed = Callable[[Mapping[str, Any]], bool]  # False if a (partial) row is impossible


def all_pairs(factors: Mapping[str, Sequence[Any]], allowed: Allowed) -> set[tuple]:
    """Every pair of values of two different factors that some allowed row can hold."""
    return {
        ((f, a), (g, b))
        for f, g in combinations(factors, 2)
        for a in factors[f]
        for b in factors[g]
        if allowed({f: a, g: b})
    }


def pairs_of(row: Mapping[str, Any], factors: Mapping[str, Sequence[Any]]) -> set[tuple]:
    keys = [f for f in factors if f in row]
    return {((f, row[f]), (g, row[g])) for f, g in combinations(keys, 2)}


def cover(factors: Mapping[str, Sequence[Any]], allowed: Allowed) -> list[Row]:
    """Rows (dicts factor -> value) that hold every allowed pair at least once."""
    todo = all_pairs(factors, allowed)
    rank = {(f, v): (i, j) for i, f in enumerate(factors) for j, v in enumerate(factors[f])}
    rows: list[Row] = []
    while todo:
        (f, a), (g, b) = min(todo, key=lambda p: (rank[p[0]], rank[p[1]]))  # table order: deterministic
        row: Row = {f: a, g: b}
        for h in factors:
            if h in row:
                continue
            best, gain = None, -1
            for v in factors[h]:
                cand = {**row, h: v}
                if not allowed(cand):
                    continue
                n = len(pairs_of(cand, factors) & todo)
                if n > gain:
                    best, gain = v, n
            if best is None:
                raise ValueError(f"no allowed value of {h!r} fits {row}")
            row[h] = best
        rows.append({h: row[h] for h in factors})
        todo -= pairs_of(row, factors)
    return rows
