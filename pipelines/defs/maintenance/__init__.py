"""Maintenance: the lake's Delta tables compacted and vacuumed (``assets.py``) on a schedule (``schedules.py``)."""
