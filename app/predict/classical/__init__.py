"""Classical (no-network) segmentation: the image operations, region proposals, the predictor."""
