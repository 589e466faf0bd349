"""Stand-ins for dbt's `dbt` and `adapter` objects in sqlfluff's jinja templater (dbt/.sqlfluff:
library_path), which knows ref/source/var/config but neither dbt's cross-database macros nor
adapter.dispatch. They render what DuckDB gets, near enough to lint: never used by dbt itself."""
