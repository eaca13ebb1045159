"""Hypothesis fuzzing of the manifest loader: random edits of a real manifest (and random bytes)
either load or raise ManifestError, never anything else (no KeyError/TypeError reaching a user)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.artifacts.manifest import ManifestError, load_manifest
from runtime.artifacts.schema import listed_files
from runtime.errors import InputError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def good(cpu_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's real CPU artifacts (built by conftest's cpu_artifacts)."""
    dst = tmp_path_factory.mktemp("fuzz") / "art"
    shutil.copytree(cpu_artifacts, dst)
    load_manifest(dst)
    return dst


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(m: Any, path: tuple, action: str, value: Any) -> Any:
    if not path:
        return value
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return m


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_only_raise_manifest_errors(good: Path, data: st.DataObject) -> None:
    original = (good / "manifest.json").read_text()
    m = json.loads(original)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _paths(m)
        path = data.draw(st.sampled_from(paths), label="path")
        action = data.draw(
            st.sampled_from(["delete", "replace"]) if path else st.just("replace"), label="action"
        )
        m = _mutate(m, path, action, data.draw(JSON, label="value"))
    try:
        (good / "manifest.json").write_text(json.dumps(m))
        try:
            got = load_manifest(good)
        except (ManifestError, InputError) as e:
            assert "\n" not in str(e)
        else:  # whatever loads is usable: every file it names exists and matched its hash
            assert all((good / rel).is_file() for _, rel, _ in listed_files(got))
    finally:
        (good / "manifest.json").write_text(original)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_only_raise_manifest_errors(good: Path, raw: bytes) -> None:
    original = (good / "manifest.json").read_bytes()
    try:
        (good / "manifest.json").write_bytes(raw)
        with pytest.raises(ManifestError):
            load_manifest(good)
    finally:
        (good / "manifest.json").write_bytes(original)
