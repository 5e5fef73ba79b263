"""``invoke(*args)``: run the ``sims`` CLI in-process (exceptions propagate, wide console).

The persistent compilation cache is off (``PREFIX_NTK_COMPILE_CACHE=off``): tests write nothing
under the user's cache folder.
"""

from typer.testing import CliRunner

from sims.cli import app as cli


def invoke(*args):
    env = {"COLUMNS": "200", "PREFIX_NTK_COMPILE_CACHE": "off"}
    return CliRunner(env=env).invoke(cli.build_app(), [str(a) for a in args], catch_exceptions=False)
