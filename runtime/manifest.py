"""The artifacts manifest: the only thing the device reads besides the models.

Schema: docs/ARCHITECTURE.md. The runtime trusts nothing it cannot find here,
so a missing field is a clear error that names the file and the rebuild command.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ROLES = ("router", "small", "large")
REBUILD_HINT = "python -m build.engines --config {config} --target {target} --out {out}"


class ManifestError(RuntimeError):
    """The artifacts directory is missing something the runtime needs."""


def sha256_file(path: str | Path) -> str:
    """Content hash recorded for every artifact, so a swapped file is noticed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(root: str | Path) -> Path:
    root = Path(root)
    return root if root.name == MANIFEST_NAME else root / MANIFEST_NAME


def load_manifest(root: str | Path) -> dict[str, Any]:
    path = manifest_path(root)
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {path.parent}; create the artifacts with "
                            "`python -m build.engines --target cpu --out artifacts` and pass "
                            "the folder it prints")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); rebuild the artifacts") from e
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema_version {m.get('schema_version')!r}, this runtime reads "
                            f"{SCHEMA_VERSION}; rebuild with {rebuild_command(m, path.parent)}")
    missing = [r for r in ROLES if r not in m.get("models", {})]
    if missing:
        raise ManifestError(f"{path} lacks models {missing}; rebuild with {rebuild_command(m, path.parent)}")
    return m


def save_manifest(root: str | Path, manifest: dict[str, Any]) -> Path:
    """Atomic write: a crash mid-build never leaves a half-written manifest."""
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def rebuild_command(manifest: dict[str, Any], root: str | Path) -> str:
    return REBUILD_HINT.format(config=manifest.get("config", "<config>"),
                               target=manifest.get("target", "<target>"), out=Path(root).parent)


def model_file(root: str | Path, manifest: dict[str, Any], role: str, variant: str | None = None) -> Path:
    """Path of a role's ONNX (fp32 or a named variant such as int8_cpu)."""
    entry = manifest["models"][role]
    rel = entry["onnx"] if variant in (None, "fp32") else entry.get("variants", {}).get(variant, {}).get("onnx")
    if rel is None:
        have = ", ".join(["fp32", *entry.get("variants", {})])
        raise ManifestError(f"{role}: no {variant!r} model in {manifest_path(root)} (have: {have}); "
                            f"build it with `python -m build.engines --precision ...`")
    path = Path(root) / rel
    if not path.is_file():
        raise ManifestError(f"{role}: {path} is listed in the manifest but missing; "
                            f"rebuild with {rebuild_command(manifest, root)}")
    return path
