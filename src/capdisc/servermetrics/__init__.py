"""The server's own view: the Prometheus families capdisc knows, and a window's figures.

A leaf like :mod:`capdisc.schema`: :mod:`.families` is the table of known metric names
(vLLM, llama.cpp, SGLang, TGI) and turns one ``/metrics`` text into a
:class:`~capdisc.servermetrics.families.Reading`; :mod:`.figures` sums up the readings of
a window (a step, a block, a version) as :class:`~capdisc.servermetrics.figures.ServerFigures`.
Who scrapes is :mod:`capdisc.loadgen.scraper`'s business (the master process only).
"""
