"""Wire formats of LLM-serving APIs: build request bodies, read answers, count chunks.

Pure functions on bytes and dicts, with no network and no Locust, so the hot path
of the load generator stays cheap and every parser can be tested on its own.
``wire_format(api)`` returns the format for a profile's ``target.api``.
"""
