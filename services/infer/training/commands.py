"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.
"""

import typer

commands = typer.Typer()
