"""Predictors: one interface, several backends (SAM2 local, classical, remote, hosted).

Backends import torch, sam2 or httpx lazily so that importing this package stays cheap.
"""
