"""The dbt project (``dbt/``) as Dagster assets, wired as Dagster's dbt examples do: the
``DbtProject`` (``project.py``), a translator from dbt nodes to assets (``translator.py``) and
the ``@dbt_assets`` that run ``dbt build`` with the ``DbtCliResource`` (``assets.py``)."""
