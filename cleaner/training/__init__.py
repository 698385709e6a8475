"""Models, training and out-of-fold prediction: ``cleaner oof`` and its parts.

A run's plan (:mod:`~cleaner.training.run_plan`), one fold's training
(:mod:`~cleaner.training.fold_train`), the trainer (:mod:`~cleaner.training.train`),
the refresh between cleaning rounds, and where folds run (Ray, torchrun).
"""
