"""Data contracts: a blocking asset check per topic over its landing run (``checks.py``)."""
