"""Pointer interaction state machines: plain Python, no Qt (an import-linter contract keeps
it so). The canvas translates Qt mouse events into ``PointerEvent`` (image coordinates) and
feeds them to the active tool's adapter in ``app.ui.tools``."""
