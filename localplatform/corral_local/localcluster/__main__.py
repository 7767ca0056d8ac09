"""`python -m corral_local.localcluster up|down|status|run` (see `_cli.py`)."""

from corral_local.localcluster._cli import cli

cli(prog_name="python -m corral_local.localcluster")
