"""PyTorch -> ONNX export, verification, quantization."""
