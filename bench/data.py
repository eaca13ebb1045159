"""Where the benchmarks and the tests find their data: ``../shared/data`` and built artifacts.

Why here: benchmarks (bench/) and tests (tests/) both need them, and tests may import bench
but bench never tests (imports go one way); tests/conftest.py turns these into fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the clone, or env ``DYNPOSE_SHARED_DATA``."""
    return Path(os.environ.get("DYNPOSE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def build_artifacts(out_root: Path, config: str, target: str = "cpu", extra: tuple[str, ...] = ()) -> Path:
    """Run the real build CLI once; returns the artifacts folder."""
    from build.engines import main

    rc = main(["--config", config, "--target", target, "--out", str(out_root), *extra])
    if rc != 0:
        raise RuntimeError(f"python -m build.engines --config {config} --target {target} exited {rc}")
    return out_root / f"{config}-{target}"


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
