"""PyTorch side of avfuse: encoders, fusion heads, data, training, synthetic data."""
