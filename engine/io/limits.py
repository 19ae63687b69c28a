"""Limits that protect memory from hostile files (decompression bombs)."""

#: Largest image, in pixels per frame, that is decoded (a 16k x 16k radiograph fits).
MAX_PIXELS = 16384 * 16384
#: Largest total decoded pixels of one file (all frames together).
MAX_TOTAL_PIXELS = 4 * MAX_PIXELS
