"""The type of a frame's track ids (one per box, 0 = untracked), shared by the tracker's users.

Why a module: the tracker returns a NumPy array, records and the overlay also accept plain
lists (tests, the API), and the drawing, record and smoothing code must agree on that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

TrackIds: TypeAlias = Sequence[int] | npt.NDArray[np.integer[Any]]
