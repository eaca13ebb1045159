"""Hypothesis fuzzing of the detection and ground-truth readers: whatever JSON comes in, they either
return checked records or raise the one documented error type (RecordError / InputError, exit 2)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from measure.gt_records import check_dataset
from runtime.errors import InputError
from runtime.io.records import RecordError, parse_detections, read_json

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)
numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
)
det_records = st.fixed_dictionaries(
    {},
    optional={
        "image_id": st.one_of(st.integers(0, 10), numbers),
        "frame": numbers,
        "category_id": st.one_of(st.just(1), numbers),
        "bbox": st.one_of(st.lists(numbers, min_size=0, max_size=6), numbers),
        "score": numbers,
    },
)


@SETTINGS
@given(st.one_of(json_values, st.lists(det_records, max_size=6)), st.booleans())
def test_detection_reader_raises_only_record_errors(data, frame_keys):
    try:
        dets, other = parse_detections(data, "fuzz", frame_keys=frame_keys)
    except RecordError as e:
        assert "\n" not in str(e) and "fuzz" in str(e)
        return
    assert isinstance(data, list) and len(dets) + other == len(data)
    for d in dets:
        assert isinstance(d.key, int) and len(d.bbox) == 4 and math.isfinite(d.score)
        assert all(isinstance(v, float) for v in d.bbox)


annotations = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.integers(0, 5), numbers),
        "image_id": st.one_of(st.integers(0, 3), numbers),
        "category_id": st.one_of(st.just(1), numbers),
        "iscrowd": st.one_of(st.integers(0, 2), numbers),
        "keypoints": st.one_of(
            st.lists(st.integers(0, 2), min_size=51, max_size=51), st.lists(numbers, max_size=54)
        ),
        "bbox": st.one_of(
            st.lists(numbers, min_size=4, max_size=4), st.lists(st.floats(0, 100), min_size=4, max_size=4)
        ),
        "area": numbers,
        "num_keypoints": numbers,
    },
)
datasets = st.fixed_dictionaries(
    {
        "images": st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(0, 3), numbers)}), max_size=3),
        "annotations": st.lists(annotations, max_size=4),
    },
    optional={"categories": json_values},
)


@SETTINGS
@given(st.one_of(json_values, datasets))
def test_ground_truth_reader_raises_only_record_errors(data):
    try:
        out = check_dataset(data, "fuzz")
    except RecordError as e:
        assert "\n" not in str(e) and "fuzz" in str(e)
        return
    for a in out["annotations"]:
        assert len(a["keypoints"]) == 51 and math.isfinite(a["area"]) and a["area"] >= 0
        assert len(a["bbox"]) == 4 and all(math.isfinite(v) for v in a["bbox"])
    json.dumps(out["annotations"], allow_nan=False)


@SETTINGS
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_json_file_reader_raises_only_input_errors(tmp_path_factory, raw):
    p = tmp_path_factory.getbasetemp() / "fuzz.json"
    p.write_bytes(raw)
    try:
        read_json(p, "fuzz input", "--dets")
    except InputError as e:
        assert "\n" not in str(e) and "--dets" in str(e)
