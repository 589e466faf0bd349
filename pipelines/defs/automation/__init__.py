"""Automation: continuous micro-batches on lag, a daily full build, freshness on the marts.

- ``landing_lag_sensor`` (``sensors.py``; every ``TRADELAKE_SENSOR_INTERVAL`` seconds, default
  30, read when the code location loads) reads each partition's lag (high watermark − the
  offsets the lake's ``_batches`` table has committed, as ``tradelake status`` does). When any
  topic lags it requests a ``micro_batch`` run of the lagging topics' landing assets, the
  lake's ``_batches`` and ``_quarantine`` tables, and everything downstream of them (their
  contract checks, then ``dbt build`` of the affected models: incremental models only process
  the new batches). It skips while a micro-batch run is queued or running, and does not
  request the same lag twice (the run key is the lagging partitions' positions and high
  watermarks), so a failed run is retried when new records arrive or from the UI.
  Unreachable broker: it skips and says why.
- ``daily_full_build`` (``schedules.py``, 03:00 UTC): every asset but maintenance, with
  ``dbt build --full-refresh`` (``jobs.py``: the two jobs).
- Marts (models under ``models/marts/``) carry a freshness policy fit for continuous mode
  (``freshness.py``): ``WARN`` when not rebuilt for ``W`` minutes, ``FAIL`` after ``F``, from
  ``TRADELAKE_MART_FRESHNESS_MINUTES=W,F`` (default ``5,15``; ``F`` alone: no warning), read
  when the code location loads. Freshness is the age of the latest materialization, so marts
  go stale when nothing rebuilds them: no runner nor sensor, or no new data to build from (the
  marketplace streams around the clock, so a quiet stream is worth a look too). Dagster's
  freshness daemon evaluates it and the UI shows each mart's state; ``FreshnessPolicy`` is
  1.13's successor of the superseded ``build_last_update_freshness_checks``.

``tradelake ingest --follow`` remains the way to land continuously without Dagster.
"""
