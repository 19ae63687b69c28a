"""Tests of the desktop app (msfm_desktop/), real widgets offscreen."""
