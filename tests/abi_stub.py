"""A real shared library that exports only ``dynposeTrtHeaderVersion``, for the ABI check.

Why: the harness tests (fake TensorRT world) load a plugin library through
``load_plugin_library``, which now reads its ABI record with ctypes first; a
stub compiled with gcc in milliseconds is a loadable ELF with that record, where
building the real plugin needs nvcc and a minute.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from runtime.backends.plugin_abi import parse_trt_version


def write_abi_stub(path: Path, trt_version: str | None, cc: str | None = None) -> Path:
    """Compile ``path`` (.so) recording ``trt_version``'s headers; None: a library without the record."""
    cc = cc or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise RuntimeError("gcc not found; install it (apt-get install gcc) for the ABI stub library")
    path = Path(path)
    src = path.with_suffix(".c")
    if trt_version is None:
        src.write_text("int dynpose_unrelated(void) { return 0; }\n")
    else:
        v = parse_trt_version(trt_version)
        src.write_text(
            "int dynposeTrtHeaderVersion(int *ma, int *mi, int *pa) {\n"
            f"  if (ma) *ma = {v.major}; if (mi) *mi = {v.minor}; if (pa) *pa = {v.patch};\n"
            f"  return {v.major * 1000 + v.minor};\n}}\n"
        )
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(path), str(src)], check=True, capture_output=True)
    return path
