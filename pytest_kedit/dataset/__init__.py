"""Where cases come from and checking them: the built-in suites, a folder in the upstream layout,
the published files; sampling and dealing shards; the one validator behind the loader and
``kedit check-data``; how long a case's inputs are for a model.
"""
