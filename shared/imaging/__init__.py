"""The image library every part shares: DICOM pixels to a display image, breast segmentation, and the
one-view pipeline that makes the model input (the preprocess service, training, evaluation and the
DICOMweb renderer call these functions, never each other)."""
