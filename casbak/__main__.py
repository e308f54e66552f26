"""``python -m casbak`` runs the CLI."""

from casbak.cli import run

run()
