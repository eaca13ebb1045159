"""Device-side runtime: numpy, OpenCV and onnxruntime or TensorRT+pycuda only.

from runtime import load_pipeline
pipe = load_pipeline("artifacts/dyn-r50-h32-cpu")
result = pipe(image_bgr, boxes_xywh)      # FrameResult, one row per box
pipe = load_pipeline(root, backend="ort", threads=2)   # backend options by keyword, checked by name
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.pose.pipeline import PosePipeline


def load_pipeline(root: str | Path, **options: Any) -> PosePipeline:
    """Lazy re-export of :func:`runtime.pose.pipeline.load_pipeline`: ``import runtime`` stays cheap."""
    from runtime.pose.pipeline import load_pipeline as _load

    return _load(root, **options)
