"""Entry point for ``python -m cleaner`` (used by torchrun and subprocess tests)."""

from cleaner.cli import app

app()
