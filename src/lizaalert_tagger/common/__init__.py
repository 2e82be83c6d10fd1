"""Torch-free foundations: the attribute spec, file names, photo formats, labels CSV, EXIF, scoring, overlays."""
