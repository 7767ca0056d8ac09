"""The admin commands (`corral db|jobs|stats|dispatch|tokens|workers`).

`corral.cli` imports `corral.admin.cli` lazily when one of these commands
runs. They sit beside the other command modules (`corral.worker.cli`,
`corral.controller.cli`) and reach PostgreSQL only through `corral.queue`,
which is the database layer and knows nothing of click.
"""
