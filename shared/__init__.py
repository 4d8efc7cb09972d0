"""Contracts and wiring shared by every Mexican Deep DICOM service."""

__version__ = "0.1.0"
