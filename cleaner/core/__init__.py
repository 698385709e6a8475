"""What every layer stands on: errors, atomic writes, the project lock, progress,
the pipeline config and its named choices, metrics, intervals and figures.

Nothing here imports another subpackage of ``cleaner``.
"""
