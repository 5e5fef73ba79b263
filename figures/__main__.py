"""``python -m figures``: build the figures from stored runs (see :mod:`figures.cli`; never simulates)."""

from figures.cli import app

if __name__ == "__main__":
    app()(prog_name="python -m figures")
