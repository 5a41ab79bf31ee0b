"""avfuse runtime: decode, segment, run the ONNX model, write labels. Never imports torch."""

__version__ = "0.1.0"
