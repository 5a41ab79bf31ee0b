"""Reports a person opens in a browser: a run's output folder or a training run as one self-contained HTML file
(:mod:`stream.report.run_report`, :mod:`stream.report.train_report`), and the live view a run serves while it
goes on (:mod:`stream.report.live`). Each page's template sits beside its module; nothing is fetched at view time."""
