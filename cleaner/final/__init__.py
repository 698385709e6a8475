"""The final model: ``cleaner retrain`` on the cleaned, reweighted labels, and its report."""
