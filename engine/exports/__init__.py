"""Exports (SPEC §7): overlay PNGs and burn-in (:mod:`.burn`), DICOM SC/SR/GSPS
(:mod:`.export`, :mod:`.dicom_objects`), CSV (:mod:`.csvout`), PACS send (:mod:`.pacs`).
All writing goes through :mod:`.writer`: complete files only, never over existing ones."""
