"""How a run that has started ends: one exit-code policy for ``runtime.images`` and ``runtime.video``.

Why a module: both commands write outputs as they go, so the same failure must end them the
same way (any number of cameras included). The policy, documented in docs/bad-input.md:

- before any work (flags, sources, artifacts, a backend or Triton server that cannot be
  reached or does not serve the models): the failure propagates to runtime.errors' boundary,
  exit 2 (bad input), nothing of this run is left behind;
- the backend lost part-way (a Triton server killed, a GPU error): exit 3 (incomplete), every
  output written so far is kept and valid, one ``partial run:`` line says how much;
- an input that ends early (a truncated file, a camera gone for good): exit 3 after every
  frame read was written;
- SIGINT / SIGTERM: 130 / 143 with outputs closed and valid; anything else keeps its code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runtime.backends.base import BackendError
from runtime.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, IncompleteRun

SIGNAL_CODES = {None: EXIT_OK, "SIGINT": EXIT_SIGINT, "SIGTERM": EXIT_SIGTERM}


@contextmanager
def started_run(partial: Callable[[], str], kept: str) -> Iterator[None]:
    """Around the part of a run that writes outputs. A failure inside first prints
    ``partial run: <partial()>`` (what was written); a lost backend becomes exit 3 naming ``kept``,
    anything else propagates unchanged (an output error stays 4, a Ctrl-C 130)."""
    try:
        yield
    except BackendError as e:
        print(f"partial run: {partial()}", file=sys.stderr)
        raise IncompleteRun(
            f"{e}; the backend was lost mid-run", None, f"{kept} holds every output written so far"
        ) from None
    except BaseException:
        print(f"partial run: {partial()}", file=sys.stderr)
        raise


def end_code(interrupted: str | None, ended_early: str | None) -> int:
    """The exit code of a run that finished its loop: its input ended early (3), a signal
    stopped it gracefully (130 / 143), else 0."""
    if ended_early:
        return EXIT_INCOMPLETE
    return SIGNAL_CODES[interrupted]
