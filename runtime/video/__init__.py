"""The video engine: N cameras (one is N = 1) through read, detect + track, pose, smooth and write."""
