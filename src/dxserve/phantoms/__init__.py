"""Synthetic apical four-chamber echocardiograms with exact lesion masks.

:mod:`anatomy` draws the scene (echogenicity map and the lesion mask), :mod:`speckle` images it
with a convolution model of B-mode ultrasound, :mod:`dicom` writes it as a DICOM study of a fake
patient, and :mod:`generate` writes whole datasets. Nothing here is clinical data.
"""

FINDINGS = ("effusion", "thrombus", "dilated_lv")  # the demo model's training data
# Findings drawn only when asked for: data a model trained on FINDINGS has never seen (a
# tenant's own case mix, to fine-tune on).
EXTRA_FINDINGS = ("atrial_mass",)
LABELS = ("normal", "abnormal")
