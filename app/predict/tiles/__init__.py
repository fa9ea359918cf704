"""Large images in tiles (issue 16): the grid, the logit fields and ``TiledPredictor``."""
