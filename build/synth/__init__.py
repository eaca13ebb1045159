"""Synthetic people for the trained fixtures: articulated COCO-17 figures drawn with OpenCV.

``python -m build.synth --out DIR --n-images N --seed S`` writes a COCO
keypoint dataset (images, person_keypoints.json, detections.json).
"""

from .coco import load_photos, write_dataset  # noqa: F401
from .scene import Person, Scene, make_scene  # noqa: F401
from .skeleton import KEYPOINT_NAMES, Figure, sample_figure  # noqa: F401
