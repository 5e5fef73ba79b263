"""What a hostile user types, for every option of every experiment (issue 23).

Each option of each experiment (``sims.experiments.load_all()``, the options generated from its config)
and each run option is given each of ``0, -1, 1.5, nan, inf, 1e300, ''``.  A value outside the
option's declared range (the field's :class:`~sims.core.checks.Count` or
:class:`~sims.core.checks.Interval`; choices, flags and folders: always) must end with exit 2, one line of output
(``error: ...``), no traceback and nothing written, before any work: the engine's ``execute`` is
never reached (checked by replacing it, not by a clock).  A value inside the range must pass the option's check: with ``--dry-run``
the command plans without running (exit 0 or 3), or is refused by a rule across options (exit 2,
one line, not the option's own range).  The expectation is computed here from the declared
range, not by calling the check under test.
"""

from __future__ import annotations

import math

import pytest

import sims.core.execution
import sims.experiments
from cli_runner import invoke_built
from sims.cli.options import specs_of

VALUES = ("0", "-1", "1.5", "nan", "inf", "1e300", "")
RUN_OPTIONS = ("--out", "--precision", "--devices", "--compile-cache")


def _in_range(spec, text: str) -> bool:
    """Whether ``text`` lies in the option's declared range (independently of the CLI's checks)."""
    if spec is None or spec.kind in ("bool", "choice", "str"):
        return False  # a flag takes no value; no choice, folder or precision is a number or empty
    try:
        x = float(text)
    except ValueError:
        return False
    if not math.isfinite(x) or (spec.kind == "count" and x != math.floor(x)):
        return False
    return x in spec.interval


def _cases():
    for exp in sims.experiments.load_all():
        specs = {s.opt: s for s in specs_of(exp)}
        # The run options are the same code for every experiment: checked on one that splits its
        # rows over devices (kernel) and one that does not (ntk-attention-error).
        run_opts = RUN_OPTIONS if exp.name in ("kernel", "ntk-attention-error") else ()
        for opt in [*specs, *run_opts]:
            yield pytest.param(exp.name, opt, [(v, _in_range(specs.get(opt), v)) for v in VALUES],
                               id=f"{exp.name}{opt}")


CASES = list(_cases())


@pytest.fixture(scope="module", autouse=True)
def _warm():
    invoke_built("run", "kernel", "--n", "-1")  # imports and the app's build, once


class WorkBegan(Exception):
    """Raised by the stand-in for the engine's ``execute``: a refused or dry-run command never gets there."""


def _no_work():
    raise WorkBegan


def _problem(folder, experiment, opt, value, valid, monkeypatch) -> str | None:
    """What is wrong with ``sims run experiment opt=value`` (run in an empty ``folder``), or None."""
    out = ["--out", folder / "out"] if opt != "--out" else []
    args = ["run", experiment, *out, f"{opt}={value}"] + (["--dry-run"] if valid else [])
    executed = []
    monkeypatch.setattr(sims.core.execution, "execute", lambda *a, **k: executed.append(a) or _no_work())
    try:
        r = invoke_built(*args)
    except WorkBegan:
        return "reached the engine's execute (work began)"
    lines = [line for line in r.output.splitlines() if line.strip()]
    one_error_line = len(lines) == 1 and lines[0].startswith("error: ")
    if "Traceback" in r.output:
        return "a traceback"
    if executed:
        return "reached the engine's execute (work began)"
    if any(folder.iterdir()):
        return f"wrote {sorted(p.name for p in folder.iterdir())}"
    if not valid and (r.exit_code != 2 or not one_error_line):
        return f"exit {r.exit_code}, {len(lines)} line(s): {r.output[:300]!r}"
    if valid and r.exit_code not in (0, 2, 3):
        return f"exit {r.exit_code} for a value in range: {r.output[:300]!r}"
    if valid and r.exit_code == 2 and (not one_error_line or f"{opt} must" in lines[0]):
        return f"a value in range refused: {r.output[:300]!r}"  # exit 2 only from a rule across options
    return None


@pytest.mark.parametrize(("experiment", "opt", "values"), CASES)
def test_hostile_values(tmp_path, monkeypatch, experiment, opt, values):
    problems = []
    for i, (value, valid) in enumerate(values):
        folder = tmp_path / str(i)
        folder.mkdir()
        monkeypatch.chdir(folder)  # `--out ''` or a relative folder would land here
        why = _problem(folder, experiment, opt, value, valid, monkeypatch)
        if why:
            problems.append(f"{opt}={value!r} ({'in' if valid else 'out of'} range): {why}")
    assert not problems, "\n".join(problems)


def test_the_matrix_covers_every_option():
    opts = {(c.values[0], c.values[1]) for c in CASES}
    for exp in sims.experiments.load_all():
        for s in specs_of(exp):
            assert (exp.name, s.opt) in opts
    values = [v for c in CASES for v in c.values[2]]
    assert len(values) == 7 * len(CASES)
    assert sum(not ok for _, ok in values) > 0.8 * len(values)  # mostly refusals


def test_the_work_detector_sees_a_run(tmp_path, monkeypatch):
    """Negative control of the check above: a valid command without ``--dry-run`` does reach the
    engine's ``execute``, so "never reached" means something."""
    monkeypatch.chdir(tmp_path)
    executed = []
    monkeypatch.setattr(sims.core.execution, "execute", lambda *a, **k: executed.append(a) or _no_work())
    try:
        invoke_built("run", "kernel", "--out", tmp_path / "out")
    except WorkBegan:
        pass
    assert executed
