"""corral.dashboard: the web dashboard (`corral dashboard`), a product package.

An aiohttp application (`app.create_app`) serving server-rendered Jinja2 pages
that htmx refreshes in place. It reads and changes the queue only through
`corral.queue` (AsyncQueue) and reads WorkerPools and Events only through
`corral.kube`; the import contract `dashboard-is-a-client` in pyproject.toml
keeps psycopg, kubernetes, kopf, the worker and the operator out of it.

Modules: `views` and `charts` (pure: records in, what templates show out),
`session` (signed cookies, CSRF, the password check), `routes` (the pages and
actions), `app` (wiring), `cli` (the click command `corral.cli` registers).
"""
