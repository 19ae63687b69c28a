"""The Advanced box of Model ▸ Fine-tune: epochs, batch size, learning rate, input size and
validation fraction, hidden until the user ticks it (the defaults suit a first run)."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QVBoxLayout, QWidget


class AdvancedSettings(QGroupBox):
    """A checkable "Advanced" group; its fields are attributes (``epochs``, ``batch``, ``lr``,
    ``input_size``: 0 means "as the starting model", ``val_fraction``)."""

    def __init__(self, parent=None) -> None:
        super().__init__("Advanced", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.epochs, self.batch, self.input_size = QSpinBox(), QSpinBox(), QSpinBox()
        self.epochs.setRange(1, 200)
        self.epochs.setValue(3)
        self.batch.setRange(1, 256)
        self.batch.setValue(5)
        self.input_size.setRange(0, 1024)
        self.input_size.setSingleStep(32)
        self.input_size.setSpecialValueText("as the starting model")
        self.lr, self.val_fraction = QDoubleSpinBox(), QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(1e-4)
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        form = QFormLayout()
        for label, w in (("Epochs", self.epochs), ("Batch size", self.batch), ("Learning rate", self.lr),
                         ("Input size (px)", self.input_size), ("Validation fraction", self.val_fraction)):
            form.addRow(label, w)
        holder = QWidget()
        holder.setLayout(form)
        holder.setVisible(False)
        self.toggled.connect(holder.setVisible)  # hidden until asked for
        QVBoxLayout(self).addWidget(holder)
