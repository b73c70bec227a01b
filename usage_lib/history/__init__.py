"""Usage history the gateway cannot keep: an archive of settled aggregates (docs/history.md).

`schema` (its tables), `store` (opening it, migrations, the lock of the one writer),
`sync` (writing settled slices from the gateway) and `read` (answering a window from it).
"""
