"""Person detectors: one protocol, one Detections type, one letterbox and one YOLO decode."""
