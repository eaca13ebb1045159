"""Tracking over time: ids across frames, appearance for re-finding, keypoint smoothing."""
