"""pytest fixtures for the TensorRT harness (import them into a test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import world as harness


@pytest.fixture
def trt_world() -> Iterator[harness.TrtWorld]:
    """The selected version's harness (DYNPOSE_TRT_HARNESS=10|11) installed as ``tensorrt``/``pycuda``.

    A missing harness is an error naming the setup command, never a skip: a `trt` test
    that did not run against the real bindings has checked nothing.
    """
    world = harness.install()
    import runtime.backends.trt as trt_backend

    trt_backend._LOADED_PLUGINS.clear()
    yield world
    harness.uninstall()
