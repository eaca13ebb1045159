"""Triton python-backend BLS model ``dynpose``: crops in, decoded keypoints out.

For thin camera clients that do not carry the project: one request holds one
frame's crops (N x 3 x H x W, the project's preprocessing) as ``crops`` at the router's
input size and, where a net takes another size, also ``crops_<H>x<W>`` (every box again at
that size, same windows; the config's ``<role>_input`` parameters say which tensor feeds
which net, build.triton_repo.bls_inputs); the model calls
the ``router`` model, routes with the project's own ``routing.route_band`` and
the k1/k2 of the manifest copied beside it, calls ``small`` and ``large``, and
decodes with the project's head registry (runtime.heads.registry, the decoder the
pipeline uses), which build.triton_repo ships beside this file as
``dynpose_lib/runtime`` (numpy-only modules). Keypoints come back on the grid of
the head that decoded them (heatmap pixels, 64 x 48 for a 256x192 heatmap net; input pixels
for SimCC); the client maps them to the image with the inverse of the affine it cropped with
at the routed net's size (runtime.heads.grid.heatmap_to_image).
"""

import json
import os
import sys

# The stub embeds the base interpreter and ignores PYTHONPATH; tools/triton_server.py names the
# server venv's site-packages (numpy<2, which the stub was built for) in this variable.
_SITE = os.environ.get("DYNPOSE_TRITON_SITE")
if _SITE and _SITE not in sys.path:
    sys.path.insert(0, _SITE)

import numpy as np  # noqa: E402 (after the site path above)
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, os.path.join(folder, "dynpose_lib"))
        from runtime.heads.registry import decode_outputs  # the project's code, shipped beside this file
        from runtime.pose.routing import route_band

        self.decode_outputs, self.route_band = decode_outputs, route_band
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        band = manifest.get("routing") or {}
        self.k1, self.k2 = float(band.get("k1", 0.0)), float(band.get("k2", 1.0))
        presence = manifest.get("presence") or {}
        self.temperature = float(presence.get("temperature", 1.0))
        self.threshold = float(presence.get("threshold", 0.5))
        self.models = {r: params.get(f"{r}_model", r) for r in ("router", "small", "large")}
        self.outputs = {r: [o["name"] for o in manifest["models"][r]["outputs"]] for r in self.models}
        self.heads = {r: manifest["models"][r]["head"] for r in ("small", "large")}
        # "<max batch>" or "<N>!" for a fixed-N engine (DLA), which takes exactly N crops per call
        spec = {r: params.get(f"{r}_batch", "32") for r in self.models}
        self.chunk = {r: int(v.rstrip("!")) for r, v in spec.items()}
        self.static = {r: v.endswith("!") for r, v in spec.items()}
        self.inputs = {r: params.get(f"{r}_input", "crops") for r in self.models}  # crop tensor per net

    def _call(self, role, crops):
        """One child model over ``crops`` in chunks of its max batch; dict of concatenated outputs."""
        parts, step = [], self.chunk[role]
        for i in range(0, len(crops), step):
            x = crops[i : i + step]
            n = len(x)
            if self.static[role] and n < step:
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), x.dtype)])
            req = pb_utils.InferenceRequest(
                model_name=self.models[role],
                requested_output_names=self.outputs[role],
                inputs=[pb_utils.Tensor("input", np.ascontiguousarray(x))],
            )
            resp = req.exec()
            if resp.has_error():
                raise RuntimeError(f"{self.models[role]}: {resp.error().message()}")
            parts.append(
                {o: pb_utils.get_output_tensor_by_name(resp, o).as_numpy()[:n] for o in self.outputs[role]}
            )
        return {o: np.concatenate([p[o] for p in parts]) for o in self.outputs[role]}

    def _frame(self, tensors):
        """``tensors``: input name -> that size's crops of every box (same rows in each)."""
        crops = tensors[self.inputs["router"]]
        n = len(crops)
        if any(len(t) != n for t in tensors.values()):
            raise ValueError(
                f"crop inputs hold different box counts: { {k: len(t) for k, t in tensors.items()} }"
            )
        kps = np.zeros((n, 17, 2), np.float32)
        kscores = np.zeros((n, 17), np.float32)
        presence = np.zeros((n, 17), np.float32)
        if n == 0:
            return kps, kscores, presence, np.zeros(0, np.int8), np.zeros(0, np.float32)
        scores = self._call("router", crops)["score"].reshape(-1).astype(np.float32)
        large = self.route_band(scores, self.k1, self.k2)
        for role, mask in (("small", ~large), ("large", large)):
            if not mask.any():
                continue
            outs = self._call(role, np.ascontiguousarray(tensors[self.inputs[role]][mask]))
            xy, sc, pres = self.decode_outputs(self.heads[role], outs, self.temperature, self.threshold)
            kps[mask], kscores[mask], presence[mask] = xy, sc, pres
        return kps, kscores, presence, large.astype(np.int8), scores

    def execute(self, requests):
        responses = []
        for r in requests:
            try:
                tensors = {}
                for name in dict.fromkeys(self.inputs.values()):
                    t = pb_utils.get_input_tensor_by_name(r, name)
                    if t is None:
                        raise ValueError(f"input {name!r} is missing: send every crop input of the config")
                    tensors[name] = np.ascontiguousarray(t.as_numpy(), np.float32)
                out = self._frame(tensors)
            except Exception as e:  # noqa: BLE001 - a child model's failure becomes this request's error
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            names = ("keypoints", "keypoint_scores", "presence", "route", "router_score")
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in zip(names, out)]
                )
            )
        return responses
