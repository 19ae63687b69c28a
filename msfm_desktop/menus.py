"""The main window's menus and shortcuts (File, View, Analyse, Model, Help).

Built here so the window module holds behaviour, not a page of QAction boilerplate.
Every action is also reachable from the keyboard; the shortcuts are listed in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar

from engine.style import LAYER_LABELS

from .overlays import LAYERS


class MenuHost(Protocol):
    """What the menus call: the main window's slots and the parts they drive (no import of
    the window module, so no import circle)."""

    viewer: Any
    overlays: Any
    prefs: Any

    def menuBar(self) -> QMenuBar: ...
    def open_folder_dialog(self) -> Any: ...
    def open_file_dialog(self) -> Any: ...
    def open_export(self) -> Any: ...
    def open_outbox(self) -> Any: ...
    def open_settings(self) -> Any: ...
    def close(self) -> Any: ...
    def step_image(self, step: int) -> Any: ...
    def step_frame(self, step: int) -> Any: ...
    def toggle_overlays(self) -> Any: ...
    def analyse(self) -> Any: ...
    def analyse_study(self) -> Any: ...
    def cancel_all(self) -> Any: ...
    def open_finetune(self) -> Any: ...
    def open_models(self) -> Any: ...
    def open_about(self) -> Any: ...


@dataclass(frozen=True)
class MenuHandles:
    """The menu parts the window updates later: the recent-folders menu, the auto-analyse
    switch and the overlay layer switches."""

    recent: QMenu
    auto_analyse: QAction
    layers: dict[str, QAction]


def _action(win: MenuHost, menu, text: str, slot: Callable, key=None, keys=()) -> QAction:
    a = QAction(text, win)  # type: ignore[arg-type]  # the window is a QObject
    if key is not None:
        a.setShortcuts([QKeySequence(key), *(QKeySequence(k) for k in keys)])
    a.triggered.connect(slot)
    menu.addAction(a)
    return a


def build_menus(win: MenuHost) -> MenuHandles:
    """Create the menus and shortcuts; returns the parts the window updates later."""
    bar = win.menuBar()
    f = bar.addMenu("&File")
    _action(win, f, "&Open folder…", win.open_folder_dialog, QKeySequence.StandardKey.Open)
    _action(win, f, "Open &file…", win.open_file_dialog)
    recent = f.addMenu("Open &recent")
    f.addSeparator()
    _action(win, f, "&Export findings…", win.open_export, QKeySequence("Ctrl+E"))
    _action(win, f, "Send &queued objects to PACS…", win.open_outbox)
    _action(win, f, "&Settings…", win.open_settings, QKeySequence("Ctrl+,"))
    _action(win, f, "&Quit", win.close, QKeySequence.StandardKey.Quit)

    v = bar.addMenu("&View")
    _action(win, v, "&Next image", lambda: win.step_image(1), Qt.Key.Key_PageDown)
    _action(win, v, "&Previous image", lambda: win.step_image(-1), Qt.Key.Key_PageUp)
    _action(win, v, "Next &frame", lambda: win.step_frame(1), QKeySequence("Ctrl+Right"))
    _action(win, v, "Previous fra&me", lambda: win.step_frame(-1), QKeySequence("Ctrl+Left"))
    _action(win, v, "Zoom &in", lambda: win.viewer.zoom(1.25), QKeySequence.StandardKey.ZoomIn, keys=("+", "="))
    _action(win, v, "Zoom &out", lambda: win.viewer.zoom(0.8), QKeySequence.StandardKey.ZoomOut, keys=("-",))
    _action(win, v, "&Fit (reset view)", win.viewer.fit, Qt.Key.Key_F)
    _action(win, v, "&1:1", win.viewer.one_to_one, Qt.Key.Key_1)
    _action(win, v, "&Invert", lambda: win.viewer.set_inverted(not win.viewer.inverted), Qt.Key.Key_I)
    v.addSeparator()
    layers: dict[str, QAction] = {}
    for layer in LAYERS:
        a = QAction(LAYER_LABELS[layer], win)  # type: ignore[arg-type]  # the window is a QObject
        a.setCheckable(True)
        a.setChecked(win.overlays.visible[layer])
        a.toggled.connect(lambda on, layer=layer: win.overlays.set_visible(layer, on))
        v.addAction(a)
        layers[layer] = a
    _action(win, v, "Toggle all &overlays", win.toggle_overlays, Qt.Key.Key_O)

    an = bar.addMenu("&Analyse")
    _action(win, an, "&Analyse image", win.analyse, QKeySequence("Ctrl+R"))
    _action(win, an, "Analyse &study", win.analyse_study, QKeySequence("Ctrl+Shift+R"))
    _action(win, an, "&Cancel", win.cancel_all, Qt.Key.Key_Escape)
    an.addSeparator()
    auto = QAction("Analyse &automatically on open", win)  # type: ignore[arg-type]
    auto.setCheckable(True)
    auto.setChecked(win.prefs.auto_analyse)
    auto.toggled.connect(lambda on: setattr(win.prefs, "auto_analyse", on))
    an.addAction(auto)

    mm = bar.addMenu("&Model")
    _action(win, mm, "&Fine-tune on my folder…", win.open_finetune, QKeySequence("Ctrl+T"))
    _action(win, mm, "&Manage models…", win.open_models, QKeySequence("Ctrl+M"))

    h = bar.addMenu("&Help")
    _action(win, h, "&About MSFM Desktop and the model…", win.open_about, QKeySequence.StandardKey.HelpContents)
    return MenuHandles(recent, auto, layers)
