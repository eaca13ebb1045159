"""``python -m runtime.video``: see runtime.video.engine."""

from runtime.video.engine import main

if __name__ == "__main__":
    raise SystemExit(main())
