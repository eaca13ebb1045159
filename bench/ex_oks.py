"""``python -m bench.ex_oks``: the command (its code is measure.ex_oks, which build/ and calib/ import too)."""

from __future__ import annotations

from measure.ex_oks import main

if __name__ == "__main__":
    raise SystemExit(main())
