"""`python -m ethsft ...` is the `ethsft` command."""

from .cli import cli

cli()
