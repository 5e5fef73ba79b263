"""``invoke(*args)``: run the ``sims`` CLI in-process (exceptions propagate, wide console)."""

from typer.testing import CliRunner

from sims.cli import app as cli


def invoke(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli.build_app(), [str(a) for a in args], catch_exceptions=False)
