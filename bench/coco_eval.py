"""``python -m bench.coco_eval``: the command (its code is measure.coco_eval, which build/ and calib/ import too)."""

from __future__ import annotations

from measure.coco_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
