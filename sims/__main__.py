"""``python -m sims ...``: the same as the ``sims`` console script."""

from sims.cli.app import main

main()
