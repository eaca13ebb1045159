"""``python -m runtime.cli``: the ``dynpose`` dispatcher."""

from runtime.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
