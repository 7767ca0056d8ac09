"""`python -m corral.platform.localcluster up|down|status|run` (see `_cli.py`)."""

from corral.platform.localcluster._cli import cli

cli(prog_name="python -m corral.platform.localcluster")
