"""Reports a person opens in a browser: a run's output folder or a training run as one self-contained HTML file
(:mod:`~avfuse.stream.run.report.run_report`, :mod:`~avfuse.stream.run.report.train_report`), and the live view
a run serves while it goes on (:mod:`~avfuse.stream.run.report.live`). Each page's template sits beside its
module; nothing is fetched at view time."""
