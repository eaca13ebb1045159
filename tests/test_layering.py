"""runtime/ must run on a device with only numpy, OpenCV and an inference engine, and imports go
one way between the top-level packages and between runtime's sub-packages (pyproject.toml
[tool.importlinter], docs/ARCHITECTURE.md "Which way imports go")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_runtime_imports_neither_torch_nor_build_nor_calib():
    code = (
        "import sys, importlib, pkgutil, runtime\n"
        "for m in pkgutil.walk_packages(runtime.__path__, 'runtime.'):\n"
        "    if m.name != 'runtime.backends.trt' and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import runtime.backends.trt\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'build', 'calib'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# -- imports go one way: the import-linter contracts in pyproject.toml ------------------------------

TOP = ("runtime", "measure", "kernels", "calib", "build", "tools", "bench", "tests")
RUNTIME_SUBS = ("images", "video", "outcome", "detectors", "io", "tracking", "pose", "heads", "cli", "backends", "artifacts", "safe_io", "errors")  # fmt: skip


def _config() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_contracts_cover_every_top_level_package_and_runtime_sub_package() -> None:
    """A package added beside the others must be placed in the layers, not left out of them."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} | {"tests"}  # tests: a namespace package
    cfg = _config()
    assert set(cfg["root_packages"]) == packages == set(TOP)
    contracts = {c["id"]: c for c in cfg["contracts"]}
    top = contracts["top-layers"]
    assert top["type"] == "layers"
    assert {n.strip() for layer in top["layers"] for n in layer.replace(":", "|").split("|")} == packages
    sub = contracts["runtime-layers"]
    assert sub["containers"] == ["runtime"] and sub["exhaustive"] is True
    listed = {n.strip() for layer in sub["layers"] for n in layer.replace(":", "|").split("|")}
    children = {p.stem if p.is_file() else p.name for p in (REPO / "runtime").iterdir()}
    assert listed == set(RUNTIME_SUBS) == children - {"__init__", "__pycache__"}
    assert set(contracts["no-cycles"]["ancestors"]) == packages - {"tests"}


def _planted_tree(root: Path) -> None:
    """Empty packages with the repository's names and pyproject's import-linter section."""
    for top in TOP:
        (root / top).mkdir()
        (root / top / "__init__.py").write_text("")
    for sub in RUNTIME_SUBS:
        if (REPO / "runtime" / f"{sub}.py").is_file():
            (root / "runtime" / f"{sub}.py").write_text("")
        else:
            (root / "runtime" / sub).mkdir()
            (root / "runtime" / sub / "__init__.py").write_text("")
    text = (REPO / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text[text.index("[tool.importlinter]") : text.index("[tool.pytest")])


@pytest.mark.parametrize(
    "module, imports, contract",
    [
        ("runtime/pose/x.py", "import bench", "runtime imports nothing from build"),
        ("calib/x.py", "import bench", "calib imports nothing from bench"),
        ("build/x.py", "import tests", "build imports nothing from bench or tests"),
        ("bench/x.py", "import tests", "bench imports nothing from tests"),
        ("measure/x.py", "import calib", "top-level packages"),
        ("runtime/backends/x.py", "import runtime.pose", "runtime's sub-packages"),
        ("runtime/video/a.py", "import runtime.video.b", "no import cycles"),
    ],
)
def test_contracts_catch_a_planted_violation(
    tmp_path: Path, module: str, imports: str, contract: str
) -> None:
    """The contracts are live: each planted import breaks the contract it should (and a clean tree passes)."""
    import os

    _planted_tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    clean = _lint_imports(tmp_path, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tmp_path / module).write_text(imports + "\n")
    if module == "runtime/video/a.py":
        (tmp_path / "runtime/video/b.py").write_text("import runtime.video.a\n")
    r = _lint_imports(tmp_path, env)
    assert r.returncode != 0, r.stdout
    broken = r.stdout[r.stdout.index("Broken contracts") :]
    assert contract in " ".join(broken.split()), r.stdout


def test_lint_imports_passes_on_the_repository() -> None:
    """Imports go one way in the real tree (make lint and tools/test.sh run the same)."""
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
