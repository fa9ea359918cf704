"""The MaskLoop server: FastAPI over one Predictor."""
