"""Schema check of ``manifest.json``: the types of every field the runtime reads.

Why hand-written and not ``jsonschema``: the check is ~20 rules, the runtime
must stay dependency-light on the device (numpy, OpenCV, TensorRT or
onnxruntime), and each refusal has to name the field *and* the rebuild
command in one line, which a generic validator's messages do not.

The rules follow what the runtime uses (runtime/pose/pipeline.py, runtime/backends):
``schema_version``, ``config``, ``target``; ``models.<role>`` for the required
roles router/small/large and any extra role (e.g. ``detector``), each with a
relative ``onnx`` path and its ``sha256``; pose roles also a ``head``;
optional ``variants`` and ``engine`` records with the same path rules;
``routing`` (k1 <= k2, finite) and optional ``presence`` numbers. A role's ``inputs[0].shape``,
when listed, is the crop the runtime makes for that net: ``[N, 3, H, W]`` with a fixed H and W
(:func:`input_hw`); a dynamic or non-image shape is refused here, naming the net and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

REQUIRED_ROLES = ("router", "small", "large")
POSE_ROLES = ("small", "large")
_SHA = re.compile(r"[0-9a-f]{64}")


class SchemaProblem(ValueError):
    """One field of the manifest is missing or of the wrong type; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(obj: dict[str, Any], key: str, where: str, ok: Callable[[Any], bool], kind: str) -> Any:
    if key not in obj:
        raise SchemaProblem(f"{where}{key}", f"missing ({kind} expected)")
    v = obj[key]
    if not ok(v):
        raise SchemaProblem(f"{where}{key}", f"is {type(v).__name__} {str(v)[:40]!r}, expected {kind}")
    return v


def _dict(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SchemaProblem(where or "<top level>", f"is {type(obj).__name__}, expected an object")
    return obj


def safe_relpath(v: Any) -> bool:
    """A non-empty relative POSIX path that stays inside the artifacts folder."""
    if not isinstance(v, str) or not v or "\\" in v or "\x00" in v:
        return False
    p = PurePosixPath(v)
    return not p.is_absolute() and ".." not in p.parts


def _sha(v: Any) -> bool:
    return isinstance(v, str) and bool(_SHA.fullmatch(v))


def _file_record(rec: Any, where: str, path_key: str, sha_required: bool) -> None:
    rec = _dict(rec, where.rstrip("."))
    _need(rec, path_key, where, safe_relpath, "a relative path inside the artifacts folder")
    if sha_required or "sha256" in rec:
        _need(rec, "sha256", where, _sha, "a 64-digit lowercase hex sha256")


def _model(role: str, entry: Any) -> None:
    where = f"models.{role}."
    entry = _dict(entry, where.rstrip("."))
    _file_record(entry, where, "onnx", sha_required=True)
    if role in POSE_ROLES:
        _need(entry, "head", where, lambda v: isinstance(v, str) and bool(v), "a head name (str)")
    for key in ("inputs", "outputs"):
        if key in entry:
            items = _need(entry, key, where, lambda v: isinstance(v, list), "a list")
            for i, item in enumerate(items):
                _need(
                    _dict(item, f"{where}{key}[{i}]"),
                    "name",
                    f"{where}{key}[{i}].",
                    lambda v: isinstance(v, str) and bool(v),
                    "a tensor name (str)",
                )
    if role in REQUIRED_ROLES and entry.get("inputs"):  # the crop nets (a detector has its own input)
        input_hw(entry, role)
    variants = entry.get("variants", {})
    for name, rec in _dict(variants, f"{where}variants").items():
        _file_record(rec, f"{where}variants.{name}.", "onnx", sha_required=True)
    if entry.get("engine") is not None:
        # engine records come from the Python builder or build.trt.record (trtexec): both write sha256
        _file_record(entry["engine"], f"{where}engine.", "path", sha_required=False)


def _dim(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def input_hw(entry: dict[str, Any], role: str) -> tuple[int, int] | None:
    """The (H, W) of a net's image input from its ``inputs[0].shape`` (``["N", 3, H, W]``, as
    build/export.py describe_io writes it), or None when the entry lists no inputs (then the
    caller's default crop size holds). Why per net: RTMPose-m/l also come at 384x288, so the
    crop size belongs to the net, never to a module constant."""
    inputs = entry.get("inputs")
    if not inputs:
        return None
    shape = inputs[0].get("shape") if isinstance(inputs[0], dict) else None
    ok = (
        isinstance(shape, list)
        and len(shape) == 4
        and (isinstance(shape[0], str) or _dim(shape[0]))
        and shape[1] == 3
        and _dim(shape[2])
        and _dim(shape[3])
    )
    if not ok or not isinstance(shape, list):
        raise SchemaProblem(
            f"models.{role}.inputs[0].shape",
            f"is {str(shape)[:60]}, expected [N, 3, H, W] with a fixed H and W (export the {role} net "
            "with a static crop size)",
        )
    return int(shape[2]), int(shape[3])


def _routing(m: dict[str, Any]) -> None:
    routing = _dict(
        _need(m, "routing", "", lambda x: isinstance(x, dict), "an object (the routing band)"), "routing"
    )
    k1 = _need(routing, "k1", "routing.", _is_number, "a finite number")
    k2 = _need(routing, "k2", "routing.", _is_number, "a finite number")
    if k1 > k2:
        raise SchemaProblem("routing", f"k1 {k1} > k2 {k2}")
    if "large_fraction" in routing:
        _need(
            routing,
            "large_fraction",
            "routing.",
            lambda x: _is_number(x) and 0 <= x <= 1,
            "a number in [0, 1]",
        )


def _presence(pres: dict[str, Any]) -> None:
    if "temperature" in pres:
        _need(pres, "temperature", "presence.", lambda x: _is_number(x) and x > 0, "a positive number")
    if "threshold" in pres:
        _need(pres, "threshold", "presence.", lambda x: _is_number(x) and 0 <= x <= 1, "a number in [0, 1]")


def check_manifest(raw: Any, schema_version: int) -> dict[str, Any]:
    """Raise SchemaProblem for the first bad field; return the manifest when the runtime can use it."""
    m = _dict(raw, "")
    v = _need(m, "schema_version", "", lambda x: isinstance(x, int) and not isinstance(x, bool), "an integer")
    if v != schema_version:
        raise SchemaProblem("schema_version", f"is {v}, this runtime reads {schema_version}")
    for key in ("config", "target"):
        _need(m, key, "", lambda x: isinstance(x, str) and bool(x), "a non-empty string")
    if "weights" in m:
        _need(m, "weights", "", lambda x: isinstance(x, str), "a string")
    models = _dict(_need(m, "models", "", lambda x: isinstance(x, dict), "an object of roles"), "models")
    for role in REQUIRED_ROLES:
        if role not in models:
            raise SchemaProblem(f"models.{role}", "missing (the runtime needs router, small and large)")
    for role, entry in models.items():
        _model(str(role), entry)
    _routing(m)
    if "presence" in m:
        _presence(_dict(m["presence"], "presence"))
    return m


def listed_files(m: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(field, relative path, sha256 or None) of every file the manifest names (after check_manifest)."""
    out: list[tuple[str, str, str | None]] = []
    for role, entry in m["models"].items():
        out.append((f"models.{role}.onnx", entry["onnx"], entry["sha256"]))
        for name, rec in entry.get("variants", {}).items():
            out.append((f"models.{role}.variants.{name}", rec["onnx"], rec["sha256"]))
        eng = entry.get("engine")
        if eng:
            out.append((f"models.{role}.engine", eng["path"], eng.get("sha256")))
    return out
