"""Records to figures: the only place, with ``reports``, that uses pandas.

Pure functions: the per-request rows (``requests.csv`` or in memory) become a typed
DataFrame (:mod:`.frame`), then the figures of ``summary.json`` (:mod:`.figures`) and
the statistics of a comparison (:mod:`.compare`). Nothing here reads Locust's own
statistics, writes a file or prints.
"""
