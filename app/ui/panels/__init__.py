"""Dock panels: labels, instances, images."""
