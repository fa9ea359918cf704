"""MaskLoop: label image segmentation datasets with SAM2 in the loop."""

__version__ = "0.1.0"
