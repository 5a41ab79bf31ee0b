"""A run: sources, the pipeline that batches their segments through the engine, outputs, sinks, summary,
metrics and reports. Imports from :mod:`avfuse.stream.media` and :mod:`avfuse.stream.infer`."""
