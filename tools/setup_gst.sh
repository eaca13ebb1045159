#!/usr/bin/env bash
# GStreamer + PyGObject for the live-source tests and `pip install -e .[gst]` users:
# Debian's GStreamer 1.22 (base/good/bad/ugly/libav, the RTSP server typelib for the
# test server) and PyGObject <3.51 built against Debian 12's girepository-1.0.
# Idempotent: does nothing when everything imports already.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
probe() {
  "$PY" - <<'PYEOF' 2>/dev/null
import gi
for name in ("Gst", "GstApp", "GstRtspServer"):
    gi.require_version(name, "1.0")
from gi.repository import Gst, GstApp, GstRtspServer
Gst.init(None)
assert Gst.ElementFactory.find("x264enc") and Gst.ElementFactory.find("rtspsrc") and Gst.ElementFactory.find("avdec_h264")
PYEOF
}
if probe; then echo "GStreamer + PyGObject present"; exit 0; fi
if ! dpkg -s gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-libav libgirepository1.0-dev >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gstreamer1.0-tools gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
    gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
    libgirepository1.0-dev libcairo2-dev pkg-config >/dev/null
fi
"$PY" -m pip install --quiet -e '.[gst]'
probe || { echo "GStreamer/PyGObject still not importable after installing"; exit 1; }
echo "GStreamer + PyGObject installed"
