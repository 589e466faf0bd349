"""dbt's cross-database macros (``dbt.datediff`` …) for sqlfluff, rendered as dbt-duckdb does."""


def concat(fields):
    return " || ".join(str(f) for f in fields)


def cast(field, type):  # noqa: A002 - dbt's signature
    return f"cast({field} as {type})"


def datediff(first_date, second_date, datepart):
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def dateadd(datepart, interval, from_date_or_timestamp):
    return f"({from_date_or_timestamp} + cast({interval} as bigint) * interval 1 {datepart})"


def date_trunc(datepart, date):
    return f"date_trunc('{datepart}', {date})"


def type_string():
    return "varchar"


def type_bigint():
    return "bigint"
