"""The embedding cache: its store (memory + disk) and its file format."""
