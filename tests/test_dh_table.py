"""measure.dh_table: the single vs double table's assembly on hand-made predictions with known answers."""

from __future__ import annotations

import numpy as np

from measure.dh_table import crop_gt, dh_table, format_table, window_box
from measure.ex_oks import activation_windows

H, W = 64, 48


def test_window_box_gives_the_crop_window_and_its_enlargement():
    np.testing.assert_allclose(activation_windows(np.array([window_box(1.0)]))[0], [0, 0, W, H], atol=1e-9)
    np.testing.assert_allclose(
        activation_windows(np.array([window_box(2.0)]))[0], [-W / 2, -H / 2, 1.5 * W, 1.5 * H], atol=1e-9
    )


def _people(n: int = 24, seed: int = 0):
    """Crops whose lower keypoints (11..16) lie below the crop window, the rest inside it."""
    rng = np.random.default_rng(seed)
    xy = np.stack([rng.uniform(4, W - 4, (n, 17)), rng.uniform(4, H - 4, (n, 17))], -1)
    xy[:, 11:, 1] = rng.uniform(H + 6, H + 25, (n, 6))
    known = np.ones((n, 17), bool)
    valid = known.copy()
    valid[:, 11:] = False
    gt_in = valid.copy()
    return xy, known, valid, gt_in, np.full(n, 900.0)


def test_perfect_double_beats_single_only_where_it_localises_outside():
    xy, known, valid, gt_in, area = _people()
    single = np.clip(xy, 0, [W - 1, H - 1])  # the expert map cannot leave the window
    double = xy.copy()  # the outer map puts them where they are
    presence = gt_in.astype(np.float64)  # a perfect presence head
    t = dh_table(
        single, double, double, presence, np.linspace(1, 0.5, len(xy)), xy, known, valid, area, 0.5, 2.0
    )
    r = t["rows"]
    assert t["n_known_out_of_window"] == 6 * len(xy) and t["n_known_in_window"] == 11 * len(xy)
    # crop window: "out" is scored by the claim alone, so the placement cannot matter
    assert r["single"]["ex_oks_ap_crop"] == r["double"]["ex_oks_ap_crop"] == 1.0
    # 2x window: the double head placed every keypoint exactly; the single head could only say "out"
    assert r["double"]["ex_oks_ap_wide"] == 1.0
    assert r["single"]["ex_oks_ap_wide"] < 0.5
    assert r["single"]["ap_in_window"] == r["double"]["ap_in_window"] == 1.0
    assert "| single (expert map) | 1.000 |" in format_table(t)


def test_wrong_outer_choice_costs_in_window_ap_only_for_double():
    xy, known, valid, gt_in, area = _people(seed=1)
    single = xy.copy()
    presence = gt_in.astype(np.float64)
    presence[:, :5] = 0.0  # the presence head wrongly calls 5 in-window keypoints out
    double = xy.copy()
    double[:, :5] += 30.0  # ... so the double head takes the outer map there
    truth_choice = xy.copy()
    t = dh_table(single, double, truth_choice, presence, np.ones(len(xy)), xy, known, valid, area, 0.5, 2.0)
    r = t["rows"]
    assert r["single"]["ap_in_window"] == 1.0 > r["double"]["ap_in_window"]
    assert (
        r["single"]["ex_oks_ap_crop"]
        == r["double"]["ex_oks_ap_crop"]
        < r["double_truth_choice"]["ex_oks_ap_crop"]
    )


def test_crop_gt_labels_only_the_given_keypoints():
    xy, known, valid, _, area = _people(n=3)
    coco = crop_gt(xy, valid, area)
    a = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    v = np.asarray(a["keypoints"]).reshape(17, 3)[:, 2]
    assert a["num_keypoints"] == 11 and (v[:11] == 2).all() and (v[11:] == 0).all()
