"""Active label cleaning in rounds: where a budget of labels goes next.

A round selects the rows most worth a label (:mod:`~cleaner.rounds.select`),
estimates the wrong labels left and when to stop
(:mod:`~cleaner.rounds.estimate`), and, for benchmarks and the demo, answers with
a simulated annotator (:mod:`~cleaner.rounds.simulate`). The fold models are
refreshed between rounds by :mod:`cleaner.training.refresh`.
"""
