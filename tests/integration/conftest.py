"""Integration tier: real PostgreSQL, no Kubernetes.

The fixtures `pg_server`, `database_url` and `empty_database_url` come from
`tests/_postgres.py` (loaded by the top-level conftest).
"""
