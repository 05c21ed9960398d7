"""Rendering results: ``summary.json`` models, terminal tables, markdown and PNG plots.

Importing this package stays cheap (no pandas, matplotlib or scipy at import time):
the CLI imports it on every command. ``summary`` holds the result models; ``terminal``,
``markdown`` and ``plots`` render a finished summary (plots also read the records).
"""

from __future__ import annotations

from capdisc.reports.markdown import compare_markdown
from capdisc.reports.plots import plot_capacity, plot_compare
from capdisc.reports.terminal import render_compare, render_discovery, render_summary

__all__ = [
    "compare_markdown",
    "plot_capacity",
    "plot_compare",
    "render_compare",
    "render_discovery",
    "render_summary",
]
