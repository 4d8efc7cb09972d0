"""Offline machine-learning tools (not a runtime service): data-set importers, training, evaluation,
export, and the batch preprocessing and segmentation evaluation of data sets.

The runtime services never import this package; it imports the model definition and backends of
:mod:`services.infer` and the image library :mod:`shared.imaging`.
"""
