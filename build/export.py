"""torch -> ONNX -> simplified ONNX, and the parity check that proves it.

Loaders compose (Polygraphy style): :func:`export_onnx` writes the raw graph,
:func:`simplify_onnx` rewrites it in place, :func:`parity` measures ONNX
Runtime against torch. The CLI chains them; tests call them one by one.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from runtime.errors import InputError

# Parity tolerance, per output and relative to that output's scale (max |torch output|):
# fp32 ONNX Runtime vs fp32 torch differ by reassociation only (~1e-6 relative on these
# nets); 1e-3 leaves room for deep nets and still catches a wrong op, layout or weight.
# The absolute floor keeps an all-zero output (scale 0) from demanding exact equality.
PARITY_RTOL = 1e-3
PARITY_ATOL = 1e-6
INPUT_NAME = "input"
INPUT_CHW = (3, 256, 192)
OPSET = 17


def input_chw(model: nn.Module) -> tuple[int, int, int]:
    """The input (C, H, W) to trace and check ``model`` at: its ``input_hw`` (a pose net's
    ModelSpec.input_hw, e.g. 384x288 for RTMPose-m-384), else the crop size INPUT_CHW."""
    hw = getattr(model, "input_hw", None)
    return (3, int(hw[0]), int(hw[1])) if hw is not None else INPUT_CHW


def export_onnx(model: nn.Module, path: str | Path, output_names: Sequence[str], opset: int = OPSET) -> Path:
    """Legacy (TorchScript) exporter: it gives plain, TensorRT-friendly graphs with a
    symbolic batch dim, and custom-op symbolics for the plugin option."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(2, *input_chw(model))
    axes = {INPUT_NAME: {0: "N"}, **{n: {0: "N"} for n in output_names}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return path


def simplify_onnx(path: str | Path) -> str:
    """Simplify in place with onnxsim, else onnxslim; returns the tool used.

    A simplifier that fails is not fatal: the unsimplified graph is valid and
    TensorRT folds most of what onnxsim would, so we say so and go on.
    """
    path = Path(path)
    model = onnx.load(str(path))
    errors = []
    try:
        import onnxsim

        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(model)
        if ok:
            onnx.save(simplified, str(path))
            return f"onnxsim {onnxsim.__version__}"
        errors.append("onnxsim: check failed")
    except Exception as e:  # noqa: BLE001 - fall through to the next simplifier
        errors.append(f"onnxsim: {type(e).__name__}: {e}")
    try:
        import onnxslim

        slimmed = onnxslim.slim(model)
        onnx.save(slimmed, str(path))
        return f"onnxslim {onnxslim.__version__}"
    except Exception as e:  # noqa: BLE001
        errors.append(f"onnxslim: {type(e).__name__}: {e}")
    warnings.warn(f"{path.name}: left unsimplified ({'; '.join(errors)})", stacklevel=2)
    return "none"


def describe_io(path: str | Path) -> tuple[list[dict], list[dict]]:
    """Input/output names, shapes (symbolic dims as strings) and dtypes from the graph."""
    model = onnx.load(str(path), load_external_data=False)

    def one(v: onnx.ValueInfoProto) -> dict:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        return {"name": v.name, "shape": dims, "dtype": dtype}

    inits = {i.name for i in model.graph.initializer}
    return ([one(v) for v in model.graph.input if v.name not in inits], [one(v) for v in model.graph.output])


class ParityError(InputError):
    """ONNX Runtime disagrees with torch (or either yields NaN): the export is not the model."""


def _nonfinite_problem(name: str, ref: np.ndarray, got: np.ndarray) -> str | None:
    """NaN anywhere, or an inf where the other side has none, is a failure (never "0 error")."""
    for side, a in (("torch", ref), ("ONNX Runtime", got)):
        nan = int(np.isnan(a).sum())
        if nan:
            return f"{side} output {name} holds {nan} NaN of {a.size} values"
    if not np.array_equal(np.isinf(ref) & (ref > 0), np.isinf(got) & (got > 0)) or not np.array_equal(
        np.isinf(ref) & (ref < 0), np.isinf(got) & (got < 0)
    ):
        return f"output {name} has inf values where the other runtime has finite ones"
    return None


def parity(
    model: nn.Module,
    path: str | Path,
    batches: Sequence[int] = (1, 7),
    seed: int = 0,
    rtol: float = PARITY_RTOL,
    atol: float = PARITY_ATOL,
) -> dict[str, float]:
    """Max |ONNX Runtime - torch| per output over the given batch sizes.

    Raises :class:`ParityError` when an output holds NaN (``max(0.0, nan)`` would read
    as 0.0 and pass), when infs disagree, or when an error exceeds
    ``atol + rtol * scale`` with ``scale`` the output's max |torch value|.
    """
    from runtime.backends.ort_session import open_session

    sess = open_session(path)
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(seed)
    worst = {n: 0.0 for n in names}
    scale = {n: 0.0 for n in names}
    model = model.eval()
    where = f"{Path(path).name}"
    chw = input_chw(model)
    for n in batches:
        x = rng.standard_normal((n, *chw), dtype=np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
        got = sess.run(names, {INPUT_NAME: x})
        for name, r, g in zip(names, ref, got):
            if r.shape != g.shape:
                raise AssertionError(
                    f"{Path(path).name}: output {name} has shape {g.shape} in ONNX "
                    f"but {r.shape} in torch at N={n}"
                )
            if not r.size:
                continue
            bad = _nonfinite_problem(name, r, g)
            if bad:
                raise ParityError(
                    f"parity failed: {bad} at N={n}",
                    where,
                    "the weights or the exported graph produce NaN/inf; check the checkpoint "
                    "(--small-ckpt/--large-ckpt/--router-ckpt) and re-export",
                )
            finite = np.isfinite(r)
            if finite.any():
                worst[name] = max(worst[name], float(np.max(np.abs(r[finite] - g[finite]))))
                scale[name] = max(scale[name], float(np.max(np.abs(r[finite]))))
    for name in names:
        limit = atol + rtol * scale[name]
        if worst[name] > limit:
            raise ParityError(
                f"parity failed: output {name} differs by {worst[name]:.3e} between ONNX Runtime "
                f"and torch (tolerance {limit:.3e} = {atol:g} + {rtol:g} x scale {scale[name]:.3e})",
                where,
                "the ONNX graph does not compute the model; check the exporter/simplifier "
                "(try without simplification) and the opset",
            )
    return worst
