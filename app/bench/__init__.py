"""Benchmarks behind ``maskloop bench``: local SAM2, a remote server, server load."""
