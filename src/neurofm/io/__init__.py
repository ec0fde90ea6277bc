"""Reading and writing real MRI data: NIfTI, dataset layouts, DICOM."""
