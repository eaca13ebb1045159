"""Sources and sinks: frames in (files, cameras, streams), records and overlays out, writes that never half-land."""
