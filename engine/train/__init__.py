"""Training: losses (eq. 6-9), the event-generating loop, DDP helpers."""
