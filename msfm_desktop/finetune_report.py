"""What the Fine-tune panel reports, as text and tables: the folder check (usable
images only, the problems, why Fine-tune is disabled), the side-by-side held-out
comparison (n and 95 % intervals beside every metric), and the confirmation asked before
a model that scored lower than the current one is installed.

The numbers come from :func:`engine.library.finetune.preview` and
:func:`engine.library.finetune.compare_models`; whether the new model may be accepted at all, and
on which metrics it is worse, from :func:`engine.library.finetune.assess_comparison`.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QMessageBox, QTableWidget, QTableWidgetItem, QWidget

from engine.library.finetune import MIN_PER_CLASS, ComparisonVerdict, DataPreview

#: Preview problems listed under the counts (the rest are counted).
PROBLEMS_SHOWN = 8

#: Table columns: (key in the comparison, header).
COMPARE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "n (normal / abnormal)"), ("auc", "AUC [95% CI]"), ("kappa", "κ [95% CI]"), ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("threshold", "threshold"),
)
ROWS: tuple[tuple[str, str], ...] = (("previous", "current"), ("new", "new"))
METRIC_NAMES = {"auc": "AUC", "kappa": "κ"}


def preview_text(p: DataPreview) -> str:
    """The counts (usable images only), the problems, and why Fine-tune is disabled."""
    lines = []
    if p.layout:
        t = p.class_totals()
        lost = p.n_missing + p.n_undecodable
        lines.append(f"{p.layout}: {p.n} images — {t['0']} normal, {t['1']} abnormal "
                     + (f"({lost} of {p.n_listed} listed cannot be used)" if lost
                        else "(all found and decoded)" if p.decoded else "(all found)"))
        lines += [f"  {part}: {c.get('0', 0)} normal, {c.get('1', 0)} abnormal" for part, c in p.counts.items()]
        lines += [f"  {split} split: {c.get('0', 0)} normal, {c.get('1', 0)} abnormal" for split, c in p.split_counts.items()]
    rest = [m for m in p.problems if m != p.reason]  # the reason has its own line below
    lines += [f"⚠ {m}" for m in rest[:PROBLEMS_SHOWN]]
    if len(rest) > PROBLEMS_SHOWN:
        lines.append(f"⚠ … {len(rest) - PROBLEMS_SHOWN} more")
    if not p.can_start:
        lines.append(f"✗ Cannot fine-tune: {p.reason}.")
    return "\n".join(lines)


def start_tooltip(p: DataPreview | None, previewing: bool) -> str:
    """Why the Fine-tune button is (not) enabled."""
    if previewing:
        return "Checking the folder's images…"
    if p is None:
        return f"Choose a labelled folder with at least {MIN_PER_CLASS} readable images of each class."
    return f"Cannot fine-tune: {p.reason}." if not p.can_start else f"Fine-tune on {p.n} images."


def finished_text(status: str, message: str, verdict: ComparisonVerdict) -> str:
    """The panel's state line once a run ends (``status`` as job.json records it)."""
    if status == "finished" and verdict.acceptable:
        worse = " and ".join(METRIC_NAMES[k] for k in verdict.worse)
        return ("Done. Compare the two models below, then accept the new one or keep the current one."
                + (f" The new model scored lower on {worse}; accepting it asks for confirmation." if worse else ""))
    if status == "finished":
        return f"Training finished, but the new model cannot be accepted: {verdict.reason}. The current model stays active."
    if status == "cancelled":
        return "Cancelled. The last checkpoint is kept; Resume continues from it."
    return f"Stopped: {message}" if message else f"Stopped ({status})."


def fmt_value(v: Any, ci: list[float] | tuple[float, float] | None = None) -> str:
    """``0.712 [0.503–0.900]``; ``—`` when there is no value."""
    if not isinstance(v, (int, float)):
        return "—"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else "")


def fmt_n(m: dict[str, Any]) -> str:
    """``8 (4 / 4)``: images evaluated, normal / abnormal."""
    n = m.get("n") or 0
    if "n_normal" in m and "n_abnormal" in m:
        return f"{n} ({m['n_normal']} / {m['n_abnormal']})"
    return str(n)


def cell_text(m: dict[str, Any], key: str) -> str:
    if key == "n":
        return fmt_n(m)
    return fmt_value(m.get(key), m.get(f"{key}_ci"))


def setup_table(table: QTableWidget) -> None:
    """One row per model, one column per metric."""
    table.setRowCount(len(ROWS))
    table.setColumnCount(len(COMPARE_COLUMNS))
    table.setVerticalHeaderLabels([label for _, label in ROWS])
    table.setHorizontalHeaderLabels([h for _, h in COMPARE_COLUMNS])


def fill_table(table: QTableWidget, cmp: dict[str, Any] | None) -> None:
    """Show ``cmp`` (or clear the table when None)."""
    for row, (key, _) in enumerate(ROWS):
        m = (cmp or {}).get(key) or {}
        for col, (metric, _) in enumerate(COMPARE_COLUMNS):
            table.setItem(row, col, QTableWidgetItem(cell_text(m, metric) if cmp else ""))
    table.resizeColumnsToContents()


def _metric_line(cmp: dict[str, Any], key: str) -> str:
    new, prev = cmp["new"], cmp["previous"]
    return (f"{METRIC_NAMES[key]}: new {fmt_value(new.get(key))} (95% CI {_ci(new.get(f'{key}_ci'))}, n = {new.get('n')}) "
            f"vs current {fmt_value(prev.get(key))} (95% CI {_ci(prev.get(f'{key}_ci'))}, n = {prev.get('n')})")


def _ci(ci: list[float] | None) -> str:
    return f"{ci[0]:.3f} to {ci[1]:.3f}" if ci else "not available"


def worse_model_message(cmp: dict[str, Any], verdict: ComparisonVerdict) -> str:
    """The question asked before installing a model that scored lower: each decision
    metric of both models with its n and interval, the paired difference, and what
    answering Yes does."""
    worse = " and ".join(METRIC_NAMES[k] for k in verdict.worse)
    lines = [f"The new model scored lower than the current model on {worse} on the held-out images:", ""]
    lines += [_metric_line(cmp, k) for k in METRIC_NAMES]
    delta = cmp.get("delta") or {}
    if delta:
        lines.append("Difference, new − current: " + "; ".join(
            f"{METRIC_NAMES[k]} {delta[k]['value']:+.3f} (95% CI {delta[k]['ci'][0]:+.3f} to {delta[k]['ci'][1]:+.3f})"
            for k in METRIC_NAMES if k in delta))
    prev = cmp["previous"]
    boot = cmp.get("bootstrap") or {}
    lines += ["", f"Held-out images: n = {prev.get('n')} ({prev.get('n_normal')} normal, {prev.get('n_abnormal')} abnormal). "
                  f"Intervals: stratified bootstrap, {boot.get('resamples', '?')} resamples; few images give wide intervals.",
              "", "Install the new model and make it active anyway? The current model stays installed either way."]
    return "\n".join(lines)


def confirm_worse_model(parent: QWidget, cmp: dict[str, Any], verdict: ComparisonVerdict) -> bool:
    """Ask before installing a worse model; only an explicit Yes installs it (No is the default)."""
    answer = QMessageBox.question(parent, "The new model scored lower", worse_model_message(cmp, verdict),
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


__all__ = ["preview_text", "start_tooltip", "finished_text", "COMPARE_COLUMNS", "fmt_value", "fmt_n", "setup_table", "fill_table", "worse_model_message", "confirm_worse_model"]
