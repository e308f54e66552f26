"""Words for people: a number with its noun in the right number. Pure.

Here, below every layer, so that messages raised deep down (gc, verify
findings, references) say ``1 object`` as the CLI does.
"""

from __future__ import annotations


def count(number: int, noun: str, plural: str | None = None) -> str:
    """A number and its noun, singular or plural as English wants (``1 tenant``, ``2 tenants``)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
