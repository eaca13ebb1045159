"""Registers the runtime's own expected error classes with the shared boundary (exit 2).

Why a module: ``runtime.errors`` must import nothing of the runtime, and the
classes below predate it; every CLI imports this once so a bad manifest,
source, detector or box array is one line, never a traceback.
"""

from __future__ import annotations

from runtime.artifacts.manifest import ManifestError
from runtime.backends.base import BackendError
from runtime.detectors.base import DetectorError
from runtime.errors import EXIT_INPUT, register_expected
from runtime.io.sources import SourceError
from runtime.pose.preprocess import BoxError

for _cls in (BackendError, DetectorError, ManifestError, BoxError, SourceError):
    register_expected(_cls, EXIT_INPUT)
