"""capdisc: how much load an LLM-serving API really takes, and whether a new version is faster.

The package is split by job (see README, "Architecture"): ``cli`` parses and prints,
``strategies`` decide what load to apply, ``loadgen`` drives embedded Locust (the only
place that imports locust or gevent), ``apis`` speak the wire formats, ``metrics``
turns raw records into figures, ``reports`` renders them and ``simulator`` is the
embedded LLM server used as the default target.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
