"""bench.video_eval's box AP on hand-made runs: perfect boxes score 1, shifted ones less, a
confident false box less, and people no detector could see are neither hits nor misses."""

from __future__ import annotations

import pytest

pytest.importorskip("pycocotools")

from bench.video_eval import MIN_AREA, box_ap, format_table  # noqa: E402

BOXES = {0: [[10.0, 20.0, 60.0, 150.0], [200.0, 40.0, 80.0, 200.0]], 1: [[14.0, 22.0, 60.0, 150.0]]}


def _gt(extra: list[dict] | None = None) -> dict:
    images = [{"id": t + 1, "frame_id": t, "width": 640, "height": 480} for t in BOXES]
    anns = [
        {
            "id": 0,
            "image_id": t + 1,
            "category_id": 1,
            "bbox": b,
            "area": b[2] * b[3] * 0.5,
            "num_keypoints": 10,
            "iscrowd": 0,
            "track_id": k + 1,
        }
        for t, bs in BOXES.items()
        for k, b in enumerate(bs)
    ] + (extra or [])
    for i, a in enumerate(anns):
        a["id"] = i + 1
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _run(shift: float = 0.0, score: float = 0.9) -> dict[int, list[dict]]:
    return {
        t: [{"route": "small", "box": [b[0] + shift * b[2], b[1], b[2], b[3]], "score": score} for b in bs]
        for t, bs in BOXES.items()
    }


def test_perfect_boxes_score_one() -> None:
    assert box_ap(_gt(), _run()) == pytest.approx(1.0)


def test_shifted_boxes_score_lower_and_lower() -> None:
    a0, a1, a2 = box_ap(_gt(), _run()), box_ap(_gt(), _run(0.1)), box_ap(_gt(), _run(0.3))
    assert a0 > a1 > a2 > 0.0  # IoU 0.82 passes 7 of the 10 thresholds, 0.54 passes 1
    assert a1 == pytest.approx(0.7, abs=0.01) and a2 == pytest.approx(0.1, abs=0.01)


def test_a_confident_false_box_lowers_ap_and_a_missed_person_too() -> None:
    run = _run()
    run[0].append({"route": "small", "box": [400.0, 100.0, 50.0, 120.0], "score": 0.99})
    assert box_ap(_gt(), run) < 0.9
    missed = _run()
    missed[0] = missed[0][:1]
    assert box_ap(_gt(), missed) == pytest.approx(2 / 3, abs=0.01)


def test_people_no_detector_could_see_are_not_misses() -> None:
    tiny = {
        "image_id": 1,
        "category_id": 1,
        "bbox": [500.0, 400.0, 8.0, 20.0],
        "area": MIN_AREA / 2,
        "num_keypoints": 3,
        "iscrowd": 0,
        "track_id": 9,
    }
    assert box_ap(_gt([tiny]), _run()) == pytest.approx(1.0)
    seen = {**tiny, "area": MIN_AREA * 2}
    assert box_ap(_gt([seen]), _run()) < 0.99


def test_no_boxes_score_zero_and_the_table_shows_box_ap() -> None:
    assert box_ap(_gt(), {}) == 0.0
    table = format_table([("run", {"coverage": 1.0, "AP": 0.5, "box_AP": 0.75})])
    assert table.splitlines()[0].startswith("| run | coverage | AP | box AP |")
    assert "| 0.750 |" in table.splitlines()[2]
