"""Rendering results: ``summary.json`` models, terminal tables, markdown and PNG plots.

Importing this package stays cheap (no pandas, matplotlib or scipy at import time):
the CLI imports it on every command. ``summary`` holds the result models; ``terminal``,
``markdown`` and ``plots`` render a finished summary (plots also read the records).
"""
