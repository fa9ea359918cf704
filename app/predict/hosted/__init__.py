"""Clients for hosted SAM APIs (Roboflow, fal, Segmind) and what they share."""
