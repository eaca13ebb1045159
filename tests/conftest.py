"""Shared pytest fixtures: the real data beside the repo and one export per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("DYNPOSE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``. Missing data is an error, never a skip."""
    d = shared_data_dir()
    if not (d / "coco-mini" / "person_keypoints.json").is_file():
        raise RuntimeError(
            f"real test data not found at {d}; clone the repo beside shared/ or set DYNPOSE_SHARED_DATA"
        )
    return d


@pytest.fixture(scope="session")
def coco_mini(shared_data: Path) -> Path:
    return shared_data / "coco-mini"


@pytest.fixture(autouse=True, scope="session")
def _limit_threads() -> None:
    """Two cores here: keep torch from oversubscribing when tests run beside other work."""
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass


def build_artifacts(out_root: Path, config: str, target: str = "cpu", extra: tuple[str, ...] = ()) -> Path:
    """Run the real build CLI once; returns the artifacts folder."""
    from build.engines import main

    rc = main(["--config", config, "--target", target, "--out", str(out_root), *extra])
    assert rc == 0
    return out_root / f"{config}-{target}"


@pytest.fixture(scope="session")
def cpu_artifacts(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Artifacts of the default config for the CPU target, built once per test session
    (env DYNPOSE_TEST_CONFIG picks another config)."""
    from build.configs import DEFAULT_CONFIG

    config = os.environ.get("DYNPOSE_TEST_CONFIG", DEFAULT_CONFIG)
    return build_artifacts(
        tmp_path_factory.mktemp("artifacts"),
        config,
        extra=("--calib-data", str(shared_data / "coco-mini"), "--fuse-decode"),
    )


def artifacts_from_env(env_var: str, tmp_root: Path, extra: tuple[str, ...] = ()) -> Path:
    """Benchmarks reuse a built folder named by ``env_var`` (e.g. engines built on a Jetson);
    otherwise they build the default config for the CPU target once, with ``extra`` flags."""
    given = os.environ.get(env_var)
    if given:
        if not (Path(given) / "manifest.json").is_file():
            raise RuntimeError(
                f"{env_var}={given} has no manifest.json; point it at a folder "
                "written by python -m build.engines (OUT/<config>-<target>)"
            )
        return Path(given)
    from build.configs import DEFAULT_CONFIG

    return build_artifacts(
        tmp_root, DEFAULT_CONFIG, extra=("--calib-data", str(shared_data_dir() / "coco-mini"), *extra)
    )
