"""Landing: the Kafka topics and the lake's own tables as assets (``assets.py``)."""
