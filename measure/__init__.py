"""Measuring: COCO keypoint AP, ex-OKS, the precision and double-head tables, paired timing rounds.

Why a package of its own: build/ (router training, cost timing), calib/ (presence fit, the
calibration report) and bench/ (the benchmarks) all score and time nets the same way; living
below all three keeps imports pointing one way (runtime <- measure <- calib/build <- bench).
"""

from runtime.errors import missing_extra_hook

missing_extra_hook()
