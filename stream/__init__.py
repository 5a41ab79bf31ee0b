"""avfuse runtime: decode, segment, run the ONNX model, write labels. Never imports torch, onnx, models or export.

Four rooms, each importing only from the rooms before it: :mod:`avfuse.stream.media` (open and decode media into
segments), :mod:`avfuse.stream.infer` (the model file and its session), :mod:`avfuse.stream.run` (a run: sources,
batches, outputs, sinks, reports) and :mod:`avfuse.stream.cli` (the commands). :mod:`avfuse.stream.errors` is
shared by all four."""
