"""The artifacts manifest: the only thing the device reads besides the models.

Schema: docs/ARCHITECTURE.md. The runtime trusts nothing it cannot find here,
so a missing field is a clear error that names the file and the rebuild command.
At load, the field types are checked (runtime/artifacts/schema.py) and every
listed file's sha256 is compared with the manifest, so a file from another
build (or a half-copied folder) is refused instead of run. Each file is
hashed once per process: the cache is keyed on (path, size, mtime_ns), so a
file rewritten later is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.artifacts.schema import REQUIRED_ROLES, SchemaProblem, check_manifest, listed_files
from runtime.errors import EXIT_INPUT, register_expected
from runtime.safe_io import atomic_write_text

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ROLES = REQUIRED_ROLES  # required; extra roles (e.g. detector) are validated the same way
REBUILD_HINT = "python -m build.engines --config {config} --target {target} --out {out}"


class ManifestError(RuntimeError):
    """The artifacts directory is missing something the runtime needs."""


register_expected(ManifestError, EXIT_INPUT)

# (resolved path, size, mtime_ns) -> sha256: each file is read once per process
_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Content hash recorded for every artifact, so a swapped file is noticed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_sha256(path: str | Path) -> str:
    """sha256_file, once per (path, size, mtime_ns) in this process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def manifest_path(root: str | Path) -> Path:
    root = Path(root)
    return root if root.name == MANIFEST_NAME else root / MANIFEST_NAME


def load_manifest(root: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read, schema-check and (``verify``) hash-check the manifest of an artifacts folder.

    Every refusal is a ManifestError whose one line names the file or field and
    the rebuild command.
    """
    path = manifest_path(root)
    if not path.is_file():
        raise ManifestError(
            f"no {MANIFEST_NAME} in {path.parent}; create the artifacts with "
            "`python -m build.engines --target cpu --out artifacts` and pass "
            "the folder it prints"
        )
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(
            f"{path} is not valid JSON ({str(e).splitlines()[0][:80]}); rebuild the artifacts "
            "with `python -m build.engines` (see docs/build.md)"
        ) from e
    except OSError as e:
        raise ManifestError(f"cannot read {path} ({e.strerror}); check its permissions") from e
    try:
        manifest: dict[str, Any] = check_manifest(m, SCHEMA_VERSION)
    except SchemaProblem as e:
        hint = rebuild_command(m if isinstance(m, dict) else {}, path.parent)
        raise ManifestError(f"{path} is incomplete or malformed: {e}; rebuild with {hint}") from None
    if verify:
        verify_files(path.parent, manifest)
    return manifest


def verify_files(root: str | Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists and matches its sha256 (engines: when present; the TensorRT
    backend reports a missing engine itself, so ONNX-only copies still run on ONNX Runtime)."""
    root = Path(root)
    for field, rel, sha in listed_files(manifest):
        f = root / rel
        if field.endswith(".engine") and not f.exists():
            continue
        _check_file(root, manifest, field, f, sha)


def _check_file(root: Path, manifest: dict[str, Any], field: str, f: Path, sha: str | None) -> None:
    if not f.is_file():
        raise ManifestError(
            f"{f} ({field}) is listed in {MANIFEST_NAME} but missing; "
            f"rebuild with {rebuild_command(manifest, root)}"
        )
    if sha is None:
        return
    try:
        got = cached_sha256(f)
    except OSError as e:
        raise ManifestError(f"cannot read {f} ({field}: {e.strerror}); check its permissions") from e
    if got != sha:
        raise ManifestError(
            f"{f} does not match {MANIFEST_NAME} ({field}: sha256 {got[:12]}... != "
            f"{sha[:12]}...; another build's file or a damaged copy); "
            f"rebuild with {rebuild_command(manifest, root)}"
        )


def save_manifest(root: str | Path, manifest: dict[str, Any]) -> Path:
    """Atomic write: a crash mid-build never leaves a half-written manifest."""
    path = manifest_path(root)
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def rebuild_command(manifest: Mapping[str, Any], root: str | Path) -> str:
    """The build command that recreates these artifacts (named in every "rebuild" error)."""
    return REBUILD_HINT.format(
        config=manifest.get("config", "<config>"),
        target=manifest.get("target", "<target>"),
        out=Path(root).parent,
    )


# build-time precision names (build.engines --precision) -> the ONNX variant ONNX Runtime runs
PRECISION_VARIANTS = {"int8": "int8_cpu"}


def model_file(root: str | Path, manifest: dict[str, Any], role: str, variant: str | None = None) -> Path:
    """Path of a role's ONNX (fp32 or a named variant such as int8_cpu; ``int8`` means int8_cpu)."""
    variant = PRECISION_VARIANTS.get(variant or "", variant)
    entry = manifest["models"][role]
    rel = (
        entry["onnx"] if variant in (None, "fp32") else entry.get("variants", {}).get(variant, {}).get("onnx")
    )
    if rel is None:
        have = ", ".join(["fp32", *entry.get("variants", {})])
        raise ManifestError(
            f"{role}: no {variant!r} model in {manifest_path(root)} (have: {have}); "
            f"build it with `python -m build.engines --precision ...`"
        )
    path: Path = Path(root) / rel
    field = f"models.{role}.onnx" if variant in (None, "fp32") else f"models.{role}.variants.{variant}"
    sha = entry["sha256"] if variant in (None, "fp32") else entry["variants"][variant].get("sha256")
    _check_file(Path(root), manifest, field, path, sha)  # cached: a re-hash only if the file changed
    return path
