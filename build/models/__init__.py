"""Torch model zoo. Importing this package registers every architecture."""

from . import (  # noqa: F401  (hrnet-w32/w48, mbv2, probpose-s)
    fixture_nets,  # noqa: F401  (fixture-s, fixture-l: trained fixtures, issue 9)
    hrnet,
    mobilenetv2,
    resnet,  # noqa: F401  (registers res50)
    rtmpose,  # noqa: F401  (rtmpose-t/s/m/l, -m-384, -l-384)
    vit,
)
from .registry import ModelSpec, build_pose_net, build_router, get_spec, list_models, register  # noqa: F401
