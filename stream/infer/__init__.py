"""Inference: the model file's contract (inputs, outputs, metadata), its onnxruntime session, tokenizing,
post-processing and events. Imports only from :mod:`avfuse.stream.media`."""
