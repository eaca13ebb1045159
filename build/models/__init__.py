"""Torch model zoo. Importing this package registers every architecture."""
from . import resnet  # noqa: F401  (registers res50)
from . import hrnet, mobilenetv2, vit  # noqa: F401  (hrnet-w32/w48, mbv2, probpose-s)
from . import fixture_nets  # noqa: F401  (fixture-s, fixture-l: trained fixtures, issue 9)
from .registry import build_pose_net, build_router, get_spec, list_models, ModelSpec, register  # noqa: F401
