"""Operations: the ops marts' state changes published back to Kafka (``assets.py``)."""
