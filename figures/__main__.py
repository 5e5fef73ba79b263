"""``python -m figures``: the same command as ``sims figures`` (:func:`sims.cli.figures.main`)."""

from sims.cli.figures import main

if __name__ == "__main__":
    main()
