"""Tests of the Qt-free engine, mirroring engine/."""
