"""``python -m kittiwake``: the same as the ``kittiwake`` command."""

from kittiwake.cli import main

main()
