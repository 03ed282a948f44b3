"""Labelled image datasets for training and evaluation, one abstraction over several layouts.

:func:`open_dataset` recognises class folders, a CSV manifest (also what ``dxserve phantoms``
writes) and the EchoNet-Dynamic layout. Every dataset decodes its files with the serving decoder
and preprocesses them with the model's named recipe, so training sees what serving will see.
"""

from dxserve.datasets.base import Arrays, Dataset, Item
from dxserve.datasets.layouts import open_dataset

__all__ = ["Arrays", "Dataset", "Item", "open_dataset"]
