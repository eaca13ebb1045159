"""Pose core: boxes to crops, the router's split, the two nets, and results in the caller's box order."""
