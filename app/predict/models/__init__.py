"""The SAM2 model registry and checkpoint download."""
