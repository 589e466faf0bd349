"""Landing: Kafka topics to Parquet micro-batches, exactly once, routed by the contracts."""
