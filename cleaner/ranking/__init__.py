"""Which rows a person should see first: ``cleaner flag``.

cleanlab's ranking on arrays (:mod:`~cleaner.ranking.flag`), several annotators'
consensus (:mod:`~cleaner.ranking.crowd`), the trust gate, duplicates, and the
queue's rows and outputs.
"""
