"""Device-side runtime: numpy, OpenCV and onnxruntime or TensorRT+pycuda only.

from runtime import load_pipeline
pipe = load_pipeline("artifacts/dyn-r50-h32-cpu")
result = pipe(image_bgr, boxes_xywh)      # FrameResult, one row per box
"""

from __future__ import annotations


def load_pipeline(root, **options):  # noqa: ANN001, ANN201 - thin lazy re-export
    from runtime.pose.pipeline import load_pipeline as _load

    return _load(root, **options)
