"""Head decoders: turn a pose net's raw outputs into keypoints, scores and probability fields."""
