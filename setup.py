"""The one compiled piece: the CPU path's per-map maths (runtime/heads/rowmath.cpp).

Everything else is in pyproject.toml. The library is plain C++ reached through ctypes
(runtime/heads/native.py); it needs no numpy headers, and Python's only for the empty module
init that keeps ``import runtime.heads._rowmath`` (pkgutil walks) working. It is optional: where no
C++ compiler is found, pip still installs the package and the decode and the credible regions
run their numpy references (``runtime.heads.native.status()`` says which, and why).
"""

import hashlib
import sys
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "runtime/heads/rowmath.cpp"
# The source's hash is compiled in: runtime/heads/native.py refuses a library built from other
# source (an in-place build left behind by an older checkout) and names the rebuild command.
DIGEST = hashlib.sha256(Path(__file__).resolve().parent.joinpath(SOURCE).read_bytes()).hexdigest()[:16]
# -fno-wrapv undoes the -fwrapv in Python's own CFLAGS, which setuptools passes first: with it
# the decode ran 8 % slower (signed-overflow wrapping keeps loops from being vectorised).
FLAGS = (
    []
    if sys.platform == "win32"
    else ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fno-wrapv"]
)

setup(
    ext_modules=[
        Extension(
            "runtime.heads._rowmath",
            sources=[SOURCE],
            define_macros=[("DPN_SOURCE_DIGEST", f'"{DIGEST}"'), ("DPN_PYTHON_MODULE", "1")],
            language="c++",
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]
)
