"""The image canvas: a QGraphicsView in image-pixel scene coordinates."""
