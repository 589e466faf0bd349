"""``adapter.dispatch(name, namespace)`` for sqlfluff: the project's duckdb__ (else default__)
implementation of a macro loaded from dbt/macros, else a plain call ``name(args)``."""

from jinja2 import pass_context


@pass_context
def dispatch(context, macro_name, macro_namespace=None):
    for prefix in ("duckdb__", "default__"):
        macro = context.get(prefix + macro_name)
        if macro is not None:
            return macro
    return lambda *args, **kwargs: f"{macro_name}({', '.join(str(a) for a in args)})"
