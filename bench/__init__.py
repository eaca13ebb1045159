"""Command package: a missing optional dependency (its pyproject extra) fails in one line."""

from runtime.errors import missing_extra_hook

missing_extra_hook()
