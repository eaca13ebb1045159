"""``python -m build.train.fixtures`` end to end at a tiny scale: every stage runs, the report has the
AP table and the per-level split, and ``--eval-only`` re-scores what was written."""

from __future__ import annotations

import json

import pytest
import torch

from build.checkpoint import load_strict
from build.configs import get_config
from build.models import build_pose_net, build_router
from build.train.fixtures import main as fixtures_main


@pytest.mark.slow
def test_fixture_command_smoke(tmp_path, capsys) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    args = [
        "--seed",
        "3",
        "--scale",
        "0.01",
        "--out",
        str(out),
        "--work",
        str(work),
        "--photos",
        "",
        "--threads",
        "1",
    ]
    assert fixtures_main(args) == 0
    report = json.loads((out / "report.json").read_text())
    t = report["table"]
    for k in ("small", "large", "dyn", "random"):
        assert 0.0 <= t[k] <= 1.0
    assert 0.0 <= t["large_fraction"] <= 1.0
    assert set(report["levels"]) <= {"easy", "medium", "hard"} and report["levels"]
    assert sum(r["crops"] for r in report["levels"].values()) > 0
    printed = capsys.readouterr().out
    assert "| small (fixture-s) |" in printed and "| scene level |" in printed
    cfg = get_config("fixture-dyn")
    for role, choice in (("small", cfg.small), ("large", cfg.large)):  # loadable through the strict path
        net = build_pose_net(choice.arch, choice.head)
        load_strict(net, out / f"{role}.pth", role)
        assert torch.load(out / f"{role}.pth", weights_only=True)["meta"]["steps"] >= 2
    # re-scoring the written fixtures reproduces the table (same sets, same weights, same band)
    assert fixtures_main(args + ["--eval-only"]) == 0
    again = capsys.readouterr().out
    assert f"| dyn p=50 (theta {t['theta']}) | {100 * t['dyn']:.1f} |" in again


@pytest.mark.slow
def test_fixture_command_fits_the_router_of_another_fixture_config(tmp_path, capsys) -> None:
    """``--config fixture-rtm --reuse small,large``: the config's own files (small.pth shared with
    fixture-dyn, rtmpose-t.pth), its own router file and report, fixture-dyn's left alone."""
    import shutil
    from pathlib import Path

    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    fixtures = Path(__file__).resolve().parents[1] / "build" / "fixtures"
    for name in ("small.pth", "rtmpose-t.pth"):
        shutil.copy(fixtures / name, out / name)
    args = ["--config", "fixture-rtm", "--reuse", "small,large", "--seed", "3", "--scale", "0.01"]
    args += ["--out", str(out), "--work", str(work), "--photos", "", "--threads", "1"]
    assert fixtures_main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "report-fixture-rtm.json",
        "router-rtm.pth",
        "rtmpose-t.pth",
        "small.pth",
    ]
    report = json.loads((out / "report-fixture-rtm.json").read_text())
    assert report["train"]["large"]["arch"] == "rtmpose-t" and report["train"]["large"]["head"] == "simcc"
    assert 0.0 <= report["table"]["large"] <= 1.0
    assert "| large (rtmpose-t) |" in capsys.readouterr().out
    router = build_router(**get_config("fixture-rtm").router)
    load_strict(router, out / "router-rtm.pth", "router")
