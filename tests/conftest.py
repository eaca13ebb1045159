"""Shared pytest fixtures: the real data beside the repo and one export per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.data import build_artifacts, shared_data_dir

if TYPE_CHECKING:
    from tests.trt_harness.world import TrtWorld


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


@pytest.fixture(scope="session")
def cpu_artifacts(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Artifacts of the default config for the CPU target, built once per test session
    (env DYNPOSE_TEST_CONFIG picks another config)."""
    from build.configs import DEFAULT_CONFIG

    config = os.environ.get("DYNPOSE_TEST_CONFIG", DEFAULT_CONFIG)
    return build_artifacts(
        tmp_path_factory.mktemp("artifacts"),
        config,
        # --detector none: the suite's artifacts stay pose-only (HOG at run time) whatever the
        # config's own detector; tests/test_detector_fixture*.py cover that one
        extra=("--calib-data", str(shared_data / "coco-mini"), "--fuse-decode", "--detector", "none"),
    )


@pytest.fixture
def trt_world() -> Iterator[TrtWorld]:
    """The selected version's TensorRT API harness (DYNPOSE_TRT_HARNESS=10|11, tests/trt_harness)
    installed as ``tensorrt``/``pycuda``.

    A missing harness is an error naming the setup command, never a skip: a `trt` test
    that did not run against the real bindings has checked nothing.
    """
    from tests.trt_harness import world as harness

    world = harness.install()
    import runtime.backends.trt as trt_backend

    trt_backend._LOADED_PLUGINS.clear()
    yield world
    harness.uninstall()
