"""Interaction state machines: plain Python, no Qt. The canvas translates Qt mouse events
into ``PointerEvent`` (image coordinates) and feeds them to the active tool."""
