"""``invoke(*args)``: run the ``sims`` CLI in-process (exceptions propagate, wide console).

The persistent compilation cache is off (``PREFIX_NTK_COMPILE_CACHE=off``): tests write nothing
under the user's cache folder.  ``invoke_built(*args)`` does the same with one app built once
per process (building the click command of every experiment takes about 0.1 s, which a test
matrix of hundreds of calls cannot pay each time); use it only for the built-in experiments.
"""

import functools
from unittest import mock

import typer.main
import typer.testing
from typer.testing import CliRunner

from sims.cli import app as cli

ENV = {"COLUMNS": "200", "PREFIX_NTK_COMPILE_CACHE": "off"}


def invoke(*args):
    return CliRunner(env=ENV).invoke(cli.build_app(), [str(a) for a in args], catch_exceptions=False)


@functools.lru_cache(maxsize=1)
def _built():
    return typer.main.get_command(cli.build_app())


def invoke_built(*args):
    with mock.patch.object(typer.testing, "_get_command", lambda app: app):
        return CliRunner(env=ENV).invoke(_built(), [str(a) for a in args], catch_exceptions=False)
