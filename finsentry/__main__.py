"""``python -m finsentry`` is the ``finsentry`` command."""

from finsentry.cli import app

app()
