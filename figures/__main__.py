"""``python -m figures``: the same as ``sims figures`` (see :mod:`figures.cli`)."""

from figures.cli import app

if __name__ == "__main__":
    app()(prog_name="python -m figures")
