"""`python -m ethsft ...` is the `ethsft` command."""

from ethsft.cli import cli

cli()
