"""``python -m casbak`` runs the CLI."""

from casbak.launch import run

run()
