"""One-command validation of the GPU path on any machine with an NVIDIA GPU.

``python -m tools.device_check --out DIR`` builds the kernels for the local GPU,
runs sparsemax and both decodes on it against the numpy reference
(runtime/heads/decode.py), times them with CUDA events and - where TensorRT and
pycuda are importable - builds fixture engines, compares TensorRT with ONNX
Runtime, runs the fused plugin engine and measures stream overlap. Writes
``DIR/device_check.json`` and prints a report. Modules: ``gpu`` (nvcc build +
ctypes shim over kernels/device_api.cu), ``checks`` (comparisons, skip rules,
report; pure numpy, unit-tested without a GPU), ``trt_stage`` (TensorRT parts).
"""
