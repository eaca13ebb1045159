"""The artifacts folder: its manifest, the schema the device checks it against, and file hashes."""
