"""cleaner: find mislabeled images, review them, retrain on the cleaned labels."""

__version__ = "0.1.0"
