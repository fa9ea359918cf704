"""SAM2 on this machine: the model, its image features, the predictor, batched decode,
segment everything, and the official predictor's maths as a reference."""
