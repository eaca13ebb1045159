"""RTMPose configs (dyn-rtm-s-l, dyn-rtm-t-m) and pairing any two registered nets from the command
line (build.engines / build.router ``--small/--large [--small-head/--large-head]``)."""

from __future__ import annotations

import re

import pytest
import torch

from build.configs import PairChoice, check_pair, get_config, paired_config
from build.engines import cli as engines_cli
from build.models import build_pose_net
from build.router import cli as router_cli
from build.synth import write_dataset
from runtime.heads.registry import HEATMAP, PROBMAP_DH, SIMCC


@pytest.mark.parametrize(
    "name,small,large", [("dyn-rtm-s-l", "rtmpose-s", "rtmpose-l"), ("dyn-rtm-t-m", "rtmpose-t", "rtmpose-m")]
)
def test_rtmpose_configs_route_between_sizes_with_simcc_heads(name, small, large):
    cfg = get_config(name)
    assert (cfg.small.arch, cfg.large.arch) == (small, large)
    assert cfg.small.head == cfg.large.head == SIMCC
    assert cfg.checkpoints == {}  # random weights unless --small-ckpt/--large-ckpt
    check_pair(cfg)


def test_pairing_replaces_the_configs_nets_and_their_weights():
    base = get_config("fixture-dyn")
    cfg = paired_config(base, PairChoice(small="rtmpose-s", large="hrnet-w32"))
    assert cfg.name == "pair-rtmpose-s-hrnet-w32"
    assert (cfg.small.arch, cfg.small.head, cfg.large.arch, cfg.large.head) == (
        "rtmpose-s",
        SIMCC,
        "hrnet-w32",
        HEATMAP,
    )  # each net's first head by default
    assert cfg.checkpoints == {} and cfg.router == {} and cfg.calib_domain == "photos"
    only_large = paired_config(base, PairChoice(large="fixture-l", large_head=PROBMAP_DH))
    assert only_large.checkpoints == {"small": base.checkpoints["small"]}  # the kept net keeps its weights
    assert paired_config(base, PairChoice()) is base


@pytest.mark.parametrize(
    "flags,want",
    [
        (
            ["--small", "rtmpose-s", "--small-head", HEATMAP],
            "model 'rtmpose-s' takes the head.*simcc, not 'heatmap'",
        ),
        (["--large", "res50", "--large-head", SIMCC], "model 'res50' takes the head.*heatmap.*not 'simcc'"),
        (["--small", "rtmpose-x"], "unknown model 'rtmpose-x'; known: .*rtmpose-t"),
    ],
    ids=["head-small", "head-large", "unknown"],
)
def test_a_pair_that_cannot_run_is_refused_in_one_line(flags, want, tmp_path, capsys):
    rc = engines_cli(["--config", "dyn-r50-h32", *flags, "--target", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err

    assert re.search(want, err), err
    assert not any(tmp_path.iterdir())  # refused before anything was built


def _mmpose_ckpt(arch: str, path) -> str:
    torch.manual_seed(1)
    net = build_pose_net(arch, SIMCC)
    torch.save({"meta": {"arch": arch}, "state_dict": net.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("large", ["rtmpose-s", "rtmpose-m-384"])
def test_router_trains_for_a_pair_named_on_the_command_line(tmp_path, large):
    """build.router with --small/--large RTMPose nets (SimCC decode in input pixels) on synthetic
    people; with rtmpose-m-384 each net runs on the box's crop at its own size (256x192, 384x288)."""
    data = write_dataset(tmp_path / "d", 10, seed=1, photos=[])
    out = tmp_path / "router.pth"
    argv = ["--config", "dyn-r50-h32", "--small", "rtmpose-t", "--large", large]
    argv += ["--small-ckpt", _mmpose_ckpt("rtmpose-t", tmp_path / "t.pth")]
    argv += ["--large-ckpt", _mmpose_ckpt(large, tmp_path / "l.pth")]
    argv += ["--data", str(data["keypoints"]), "--images", str(data["images"])]
    argv += ["--epochs", "2", "--jitter", "3", "--out", str(out)]
    assert router_cli(argv) == 0
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["config"] == f"pair-rtmpose-t-{large}" and meta["n_train"] > 0
    assert meta["pair"]["small"] == {"arch": "rtmpose-t", "head": SIMCC}
