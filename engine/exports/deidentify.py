"""De-identification of export objects: dicognito's PS3.15 basic profile, then what it
leaves that the profile, as written, removes (issue 19, point 6).

dicognito replaces names, IDs, dates and UIDs consistently within one ``Anonymizer``; it
keeps, among others, ImageComments (our PNG wraps say "converted from <file name>"),
StudyDescription, PatientAge, PatientSex, and DeviceSerialNumber /
InstitutionalDepartmentName inside ContributingEquipmentSequence. PS3.15 Table E.1-1 marks
all of these X (remove) or Z (empty), at any depth, and asks for PatientIdentityRemoved =
YES with the method named in DeidentificationMethod.
"""

from __future__ import annotations

import pydicom

#: Removed wherever they occur, sequences included (PS3.15 E.1-1: X, or X/Z of Type 3).
REMOVE = ("ImageComments", "StudyDescription", "PatientAge", "PatientSize", "PatientWeight", "DeviceSerialNumber",
          "InstitutionalDepartmentName", "InstitutionName", "InstitutionAddress", "StationName", "OperatorsName", "PerformingPhysicianName",
          "RequestingPhysician", "AdditionalPatientHistory", "PatientComments", "OtherPatientIDs",
          "OtherPatientNames", "MedicalRecordLocator", "EthnicGroup", "Occupation")
#: Emptied (Type 2 where they are required: present, no value).
EMPTY = ("PatientSex",)
METHOD = "PS3.15 Basic Profile: dicognito + MSFM removals"  # LO: at most 64 characters


def _walk(ds: pydicom.Dataset) -> None:
    for keyword in REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in EMPTY:
        if keyword in ds:
            setattr(ds, keyword, "")
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _walk(item)


def deidentify(ds: pydicom.Dataset, anonymiser) -> pydicom.Dataset:
    """``ds`` through ``anonymiser`` (one per export: consistent pseudonyms), then the
    removals above; marked PatientIdentityRemoved = YES. Changes ``ds`` in place."""
    anonymiser.anonymize(ds)
    _walk(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    return ds


__all__ = ["deidentify", "REMOVE", "EMPTY", "METHOD"]
