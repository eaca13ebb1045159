"""Choices the fixture command makes on its own: which crops train the router, which thetas may be
picked, and when cached synthetic sets are reused."""

from __future__ import annotations

import json

import numpy as np

from build.train import fixtures
from build.train.router_fit import with_empty_boxes
from runtime.pose.routing import fit_thresholds


def test_empty_boxes_join_router_training_with_target_zero() -> None:
    target = np.array([0.5, 0.0, 0.3, 0.0], np.float32)
    valid = np.array([True, False, True, False])
    gt_index = np.array([4, 7, 2, -1])  # crop 1: a person with D_s ~ 0; crop 3: no person
    t, use = with_empty_boxes(target, valid, gt_index)
    np.testing.assert_array_equal(use, [True, False, True, True])
    np.testing.assert_allclose(t, [0.5, 0.0, 0.3, 0.0])
    t2, _ = with_empty_boxes(np.array([0.9], np.float32), np.array([False]), np.array([-1]))
    assert t2[0] == 0.0  # whatever the target said, an empty box fits 0


def test_auto_theta_keeps_to_the_budget_when_top_scores_tie() -> None:
    """A fifth of the crops tie at the top score: a band ending there holds more than p %."""
    scores = np.concatenate([np.linspace(0.0, 0.4, 80), np.full(20, 0.5)])
    grid = (0.0, 0.3, 0.5)
    fracs = {th: fit_thresholds(scores, th, 50).large_fraction for th in grid}
    assert fracs[0.3] > 0.5 + 1.5 / scores.size >= max(fracs[0.0], fracs[0.5])  # the case is real
    assert fixtures.thetas_within_budget(scores, 50, grid) == [0.0, 0.5]
    assert fixtures.thetas_within_budget(np.full(10, 0.5), 50, grid) == list(grid)  # nothing fits: all


def test_cached_sets_are_reused_only_when_they_match(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        fixtures, "PLAN", {**fixtures.PLAN, "router_images": 9, "calib_images": 8, "test_images": 8}
    )
    sets = fixtures.make_sets(tmp_path, 0, 1.0, "")
    kp = sets["router"]["keypoints"]
    stamp = kp.stat().st_mtime_ns
    assert fixtures.make_sets(tmp_path, 0, 1.0, "")["router"]["keypoints"].stat().st_mtime_ns == stamp
    monkeypatch.setattr(fixtures, "PLAN", {**fixtures.PLAN, "router_images": 12})
    sets = fixtures.make_sets(tmp_path, 0, 1.0, "")  # more images asked: the json is rewritten
    assert len(json.loads(sets["router"]["keypoints"].read_text())["images"]) == 12
    monkeypatch.setattr(fixtures, "PLAN", {**fixtures.PLAN, "router_images": 9})
    sets = fixtures.make_sets(tmp_path, 0, 1.0, "")  # 12 jpgs on disk, 9 asked: not a match
    assert len(json.loads(sets["router"]["keypoints"].read_text())["images"]) == 9


def test_scene_tag_follows_the_mix(monkeypatch) -> None:
    tag = fixtures.scene_tag()
    monkeypatch.setattr(fixtures, "MIX", {"easy": 1.0, "medium": 0.0, "hard": 0.0})
    assert fixtures.scene_tag() != tag
