"""The DICOMweb index now lives in :mod:`shared.instance_index` (QIDO-RS, WADO-RS and Query/Retrieve share it)."""

from shared.instance_index import InstanceIndexRow, register_index

__all__ = ["InstanceIndexRow", "register_index"]
