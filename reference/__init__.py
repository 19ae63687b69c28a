"""The slow per-image reference implementation of MSFM inference (loops, NumPy NMS, per-image
connected components) that the batched engine is tested and benchmarked against; not shipped."""
