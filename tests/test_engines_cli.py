"""The build CLI's surface: help, configs, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from build.configs import list_configs
from build.engines import main

REPO = Path(__file__).resolve().parents[1]


def test_help_documents_every_flag():
    r = subprocess.run(
        [sys.executable, "-m", "build.engines", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0
    for flag in (
        "--config",
        "--target",
        "--out",
        "--small-ckpt",
        "--large-ckpt",
        "--router-ckpt",
        "--theta",
        "--p",
        "--calib-data",
        "--opset",
    ):
        assert flag in r.stdout


def test_list_configs(capsys):
    assert main(["--list-configs"]) == 0
    out = capsys.readouterr().out
    for name in ("dyn-r50-h32", "dyn-mbv2-h48", "dyn-r50-probpose"):
        assert name in out and name in list_configs()


def test_unknown_config_is_one_clear_error():
    with pytest.raises(SystemExit, match="unknown --config 'nope'; choose one of"):
        main(["--config", "nope"])
