"""The Fine-tune panel's decision after a finished run: accept the new model (installed in a
worker, never on the UI thread, ADR 0004) or keep the current one. Mixed into
:class:`~msfm_desktop.finetune_panel.FineTunePanel`, whose run, comparison, store, buttons
and state label it uses."""

from __future__ import annotations

import json
from pathlib import Path

from engine.library.finetune import assess_comparison

from .finetune_report import confirm_worse_model
from .workers import Task, run_task


class DecisionMixin:
    _installing: "Task | None"
    installed_path: Path | None

    def accept_new(self) -> bool | None:
        """Install the new model (a new file; nothing is overwritten) and make it active.

        Only after a held-out comparison on both classes; a model that scored lower than
        the current one on AUC or κ is installed only when the user answers Yes to the
        question that shows both models' n and intervals. The install (hash, copy, hash,
        describe: seconds for a large model) runs in a worker, never on the UI thread
        (ADR 0004); ``installed_path`` and ``modelAccepted`` follow when it is done.
        Returns True when the install started, None when nothing will be installed."""
        verdict = assess_comparison(self.comparison)
        if self.run is None or not self.run.best.is_file() or self._installing is not None:
            return None
        if not verdict.acceptable:
            self.state.setText(f"Cannot accept the new model: {verdict.reason}.")
            return None
        if verdict.worse and not confirm_worse_model(self, self.comparison, verdict):
            self.state.setText("Not installed: the current model stays active. You can still accept the new model or keep the current one.")
            return None
        run, comparison, store = self.run, self.comparison, self.store

        def install():  # a worker thread: reading the checkpoint imports torch
            from engine.model.checkpoint import read_checkpoint

            meta = json.loads(read_checkpoint(run.best)["meta"])
            m = store.install(run.best, name=f"Fine-tuned on {Path(run.config.data).name}", base_sha256=run.base_sha256,
                              data=dict(meta.get("data") or {}), metrics=dict(meta.get("metrics") or {}), comparison=comparison)
            run.save(status="accepted")
            return m

        self._show_decision(False)
        self.state.setText("Installing the new model…")
        self._installing = run_task(install, returned=self._on_installed, errored=self._on_installed)
        return True

    def _on_installed(self, result) -> None:
        self._installing = None
        if isinstance(result, Exception):
            self.state.setText(f"Not installed: {result}. The current model stays active.")
            self._show_decision(True)
            return
        self.installed_path = result.path
        self.state.setText(f"Installed and active: {result.name} (sha256 {result.sha256[:12]}).")
        self.refresh_models()
        self.modelAccepted.emit(result.path)

    def installing(self) -> bool:
        return self._installing is not None

    def reject_new(self) -> None:
        if self.run is not None:
            self.run.save(status="rejected")
        self._show_decision(False)
        self.state.setText("Kept the current model. The new one was not installed.")

    def _show_decision(self, on: bool) -> None:
        """Offer the decision; Accept only with a usable held-out comparison (its tooltip says why not)."""
        verdict = assess_comparison(self.comparison)
        self.accept_button.setEnabled(on and verdict.acceptable)
        self.accept_button.setToolTip("" if verdict.acceptable else f"Cannot accept: {verdict.reason}")
        self.reject_button.setEnabled(on)
