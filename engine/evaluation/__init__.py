"""Measuring a model: evaluation on labelled data, its metrics and figures, comparing two models."""
