"""The load engine: the only package that touches Locust and gevent.

``contract`` (imported freely) holds the plain data the strategies exchange with the
engine: the workload, the steps, the planner protocol. ``engine`` and ``users``
import locust, which monkey-patches the standard library, so they are imported
only when a run starts (``capdisc --help`` stays fast and unpatched).
"""
