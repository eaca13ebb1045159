"""Sources and sinks: frames in (files, cameras, streams, GStreamer), records, overlays and JSON out."""
