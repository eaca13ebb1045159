#!/usr/bin/env bash
# The test data the suites read from outside the repository, checked before anything installs
# or runs (tools/test.sh calls it first; README "Exit codes": 2 = an input is missing).
# It lies in the project's shared/ folder beside the clone; DYNPOSE_SHARED_DATA=DIR replaces
# shared/data (tests/conftest.py reads the same variable). A user's bare clone has none of it:
# the main job does not need it, the tests do.
set -uo pipefail
cd "$(dirname "$0")/../.."
shared="$(cd .. && pwd)/shared"
data="${DYNPOSE_SHARED_DATA-$shared/data}"
data="${data:-.}"   # set but empty: the current folder, as tests/conftest.py reads it
missing=()
if [ -d "$data" ]; then   # name the folder when all of it is missing, else the files
  for f in coco-mini/person_keypoints.json coco-mini/person_detections.json video/people.mp4 \
           video/street.mp4 models/yolo11n-pose.onnx; do
    [ -f "$data/$f" ] || missing+=("$data/$f")
  done
else
  missing+=("$data/")
fi
for v in 10.3.0 11.1; do
  [ -f "$shared/third_party/tensorrt/$v/include/NvInfer.h" ] || missing+=("$shared/third_party/tensorrt/$v/include/")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: test data missing: ${missing[*]} (../shared beside the repository, or DYNPOSE_SHARED_DATA for" \
       "shared/data): put the project's shared/ folder beside the clone: data/ = 4 COCO val2017 photos," \
       "their keypoints and 118 detector boxes + 2 short clips (as kept in open-mmlab/mmpose's tests/data)" \
       "and Ultralytics' YOLO11n-pose ONNX (AGPL-3.0, test data only); third_party/tensorrt = NVIDIA TensorRT" \
       "10.3.0 and 11.1 headers (github.com/NVIDIA/TensorRT include/)" >&2
  exit 2
fi
