"""The Qt-free core: value types, the project store, geometry, formats, evaluation."""
