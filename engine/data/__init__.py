"""Labelled data: sources (labels CSV, MURA, class folders, DICOM + CSV) and torch datasets."""

from .sources import DataError, Sample, SampleSet, load_samples

__all__ = ["DataError", "Sample", "SampleSet", "load_samples"]
