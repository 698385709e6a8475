"""People decide: the review page, the gallery, Label Studio, and ``cleaner apply``."""
