"""Triton python-backend model: one role's ONNX run by ONNX Runtime (the CPU serving path).

Why a python model and not Triton's onnxruntime backend: no PyPI package ships
that backend (nvidia-pytriton bundles the python backend only), and this keeps
the same repository layout runnable on any CPU. Dynamic batching hands
``execute`` several requests at once; they are concatenated into one ONNX
Runtime call, which is what batching across cameras buys, then split back.
"""

import json
import os
import sys

# The stub embeds the base interpreter and ignores PYTHONPATH; tools/triton_server.py names the
# server venv's site-packages (numpy<2, which the stub was built for) in this variable.
_SITE = os.environ.get("DYNPOSE_TRITON_SITE")
if _SITE and _SITE not in sys.path:
    sys.path.insert(0, _SITE)

import numpy as np  # noqa: E402 - after the site-packages line above
import triton_python_backend_utils as pb_utils  # noqa: E402 - idem


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, folder)
        # runtime/backends/ort_session.py, copied beside this file: the runtime's session options
        from ort_session import open_session

        threads = int(params.get("intra_op_threads", "0"))
        self.session = open_session(os.path.join(folder, "model.onnx"), threads if threads > 0 else None)
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(b) for b in batches]
        try:
            x = batches[0] if len(batches) == 1 else np.concatenate(batches)
            outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(x, np.float32)})
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises several types; each becomes a reply
            err = pb_utils.TritonError(f"{type(e).__name__}: {e}")
            return [pb_utils.InferenceResponse(error=err) for _ in requests]
        responses, start = [], 0
        for n in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(o[start : start + n]))
                for name, o in zip(self.output_names, outs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
