"""The client of MaskLoop's own server: the predictor and its HTTP session."""
