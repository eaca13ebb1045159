"""``python -m bench.ex_oks`` (and ``dynpose eval``): the command; its code is measure.ex_oks, which
build/ and calib/ import too, so it lives below them."""

from __future__ import annotations

from measure.ex_oks import _main, main

__all__ = ["_main", "main"]  # _main: the dynpose dispatcher's entry (runtime.cli.main), main: python -m

if __name__ == "__main__":
    raise SystemExit(main())
