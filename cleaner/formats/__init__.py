"""The project's files, each format with its one writer and its readers.

Manifests and their annotations, the audit log, a run folder's files (named in
:mod:`cleaner.formats.run_files` only), probability tables, ``metrics.json``
records, embeddings and the relabel queue. README "Files" documents each.
"""
