"""``sims notebooks``: executed copies of the notebooks, with their outputs and figures.

The notebooks are kept as jupytext percent-format ``.py`` files in ``notebooks/`` (inputs only,
so they diff and merge as code).  This command runs each one in a fresh Jupyter kernel on the
current interpreter and writes the executed copy, outputs and inline figures included, as
``.ipynb`` and (with ``--html``, the default) a self-contained ``.html`` into an ignored folder,
``results/notebooks/`` by default.  It needs the ``notebooks`` extra
(``pip install -c constraints-cpu.txt ".[notebooks]"``: jupytext, nbclient, nbconvert,
ipykernel, jupyterlab); without it, it names the extra and exits 2 before any work.

Each kernel starts in the output folder (anything a notebook writes by a relative path lands
there), with ``PREFIX_NTK_RESULTS`` set to the results folder, so the notebooks' simulations
reuse the cells that ``sims run`` and ``sims figures`` stored there, and with
``PREFIX_NTK_FULL=1`` only under ``--full``.  A notebook ends by asserting its claim: one
that raises is still written (with the traceback in its last executed cell) and the command
exits 1.

Examples::

    sims notebooks                          # all six, small sizes, into results/notebooks/
    sims notebooks 03 kernel_limit --no-html
    sims notebooks 02 --full --out /tmp/nb  # paper-scale sizes (minutes to hours on a CPU)

Wiring (one line in ``sims/cli/app.py``'s ``build_app``): ``app.command("notebooks")(notebooks.command)``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from sims.cli import process
from sims.core import store

__all__ = ["EXTRA_HINT", "NotebookRun", "missing_tools", "find_notebooks", "execute_notebook", "command"]

#: How to install what this command needs, quoted in its error message.
EXTRA_HINT = 'pip install -c constraints-cpu.txt ".[notebooks]"'
#: The source folder of a checkout (``<repo>/notebooks``), the default when ``./notebooks`` is absent.
SOURCE_DIR = Path(__file__).resolve().parents[2] / "notebooks"
DEFAULT_OUT = Path("results") / "notebooks"
PATTERN = "[0-9][0-9]_*.py"


@dataclasses.dataclass(frozen=True)
class NotebookRun:
    """What one execution produced.

    Attributes:
        name: the notebook's stem, e.g. ``"03_linearised_dynamics"``.
        ipynb: the executed copy (always written, also when a cell raised).
        html: the HTML rendering, or None when not asked for.
        error: None if every cell ran; else the failing cell's exception name and message.
        seconds: wall time of the execution, kernel start included.
    """

    name: str
    ipynb: Path
    html: Optional[Path]
    error: Optional[str]
    seconds: float


def missing_tools(*, html: bool = True) -> list[str]:
    """The import names of the tools this command needs that are not installed (empty if none)."""
    needed = ["jupytext", "nbformat", "nbclient", "jupyter_client", "ipykernel"] + (["nbconvert"] if html else [])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def find_notebooks(names: list[str] | None, folder: Path) -> list[Path]:
    """The notebooks named by ``names`` (all, in order, if empty).

    Args:
        names: each a file name (``03_linearised_dynamics.py``), a stem, its number (``03`` or
            ``3``) or the stem without the number (``linearised_dynamics``).
        folder: where the ``NN_name.py`` notebooks are.

    Returns:
        The matching paths, in the order given, without repeats.

    Raises:
        ValueError: the folder holds no notebook, or a name matches none (or several); the message
            lists the notebooks there.
    """
    paths = sorted(folder.glob(PATTERN))
    if not paths:
        raise ValueError(f"no notebooks ({PATTERN}) in {folder}; use --dir to point at the notebooks/ folder")
    if not names:
        return paths
    keys = {p: {p.name, p.stem, p.stem[:2], str(int(p.stem[:2])), p.stem[3:]} for p in paths}
    chosen: list[Path] = []
    for name in names:
        hits = [p for p in paths if name in keys[p]]
        if len(hits) != 1:
            known = ", ".join(p.stem for p in paths)
            raise ValueError(f"notebook {name!r} matches {len(hits) or 'no'} notebook(s); known: {known}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def _kernel_manager():
    """A kernel manager whose ``python3`` kernel is this interpreter, whatever kernelspecs exist.

    A ``python3`` kernelspec installed elsewhere (``~/.local/share/jupyter``, a conda base) may
    point at another Python without this package; the executed copy must use the code that
    the command itself runs.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # lazy: the notebooks extra is optional; loaded only when notebooks run
    from jupyter_client.manager import KernelManager  # lazy: the notebooks extra is optional; loaded only when notebooks run

    spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                      display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (sims notebooks)",
                      language="python", resource_dir="")

    class _ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):  # noqa: D102
            return spec

    return KernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())  # TCP on 127.0.0.1


def _kernel_env(results: Path, full: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # let ipykernel's inline backend put the figures into the outputs
    env.pop("PREFIX_NTK_FULL", None)
    if full:
        env["PREFIX_NTK_FULL"] = "1"
    env["PREFIX_NTK_RESULTS"] = str(results.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def execute_notebook(path: Path, *, out: Path, results: Path, full: bool = False, html: bool = True,
                     timeout: int = 1800) -> NotebookRun:
    """Run one percent-format notebook in a fresh kernel and write the executed copy.

    Args:
        path: the notebook (``.py``, jupytext percent format).
        out: folder for ``<stem>.ipynb`` (and ``<stem>.html``); created if missing; the kernel's
            working folder.
        results: the results folder the notebook's simulations read and write
            (``PREFIX_NTK_RESULTS``).
        full: run at paper scale (``PREFIX_NTK_FULL=1``) instead of the small sizes.
        html: also write the HTML rendering (nbconvert).
        timeout: seconds one cell may run before it counts as failed.

    Returns:
        A :class:`NotebookRun`; ``error`` is set when a cell raised or timed out.

    Raises:
        ModuleNotFoundError: a tool of the ``notebooks`` extra is missing.
    """
    import jupytext  # lazy: the notebooks extra is optional; loaded only when notebooks run
    import nbclient  # lazy: the notebooks extra is optional; loaded only when notebooks run
    import nbformat  # lazy: the notebooks extra is optional; loaded only when notebooks run
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # lazy: the notebooks extra is optional; loaded only when notebooks run

    out.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(path, fmt="py:percent")
    # The copy is a plain notebook: no jupytext pairing, so saving it in Jupyter writes no .py.
    nb.metadata.pop("jupytext", None)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(), timeout=timeout, allow_errors=False,
                                     resources={"metadata": {"path": str(out.resolve())}})
    error = None
    t0 = time.perf_counter()
    try:
        client.execute(env=_kernel_env(results, full))
    except CellExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    except CellTimeoutError:
        error = f"a cell ran over --timeout {timeout} s"
    except (DeadKernelError, RuntimeError) as e:  # the kernel died, or did not start
        error = f"kernel: {e}"
    seconds = time.perf_counter() - t0
    ipynb = store.atomic_write_text(out / f"{path.stem}.ipynb", nbformat.writes(nb))
    html_path = None
    if html:
        from nbconvert import HTMLExporter  # lazy: optional extra, and slow to import; only for --html

        body, _ = HTMLExporter().from_notebook_node(nb)
        html_path = store.atomic_write_text(out / f"{path.stem}.html", body)
    return NotebookRun(path.stem, Path(ipynb), Path(html_path) if html_path else None, error, seconds)


def _exit(code_name: str) -> int:
    return getattr(process, code_name)


def command(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Notebooks to run: a number (03), a name (linearised_dynamics) or a file name; all if none.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the executed .ipynb/.html copies.")] = DEFAULT_OUT,
    results: Annotated[Path, typer.Option("--results", help="Results folder the notebooks' simulations use.",
                                          envvar="PREFIX_NTK_RESULTS")] = Path("results"),
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Folder holding the NN_name.py notebooks "
                                                   "(default: ./notebooks, else the checkout's).",
                                                   show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Paper-scale sizes (PREFIX_NTK_FULL=1).")] = False,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Also write an HTML copy.")] = True,
    timeout: Annotated[int, typer.Option("--timeout", min=1, help="Seconds one cell may run.")] = 1800,
) -> None:
    """Execute notebooks into .ipynb/.html copies with outputs and figures (needs the `notebooks` extra)."""
    missing = missing_tools(html=html)
    if missing:
        typer.echo(f"error: sims notebooks needs {', '.join(missing)} (the `notebooks` extra): {EXTRA_HINT}",
                   err=True)
        raise typer.Exit(_exit("EXIT_USAGE"))
    if folder is None:
        folder = Path("notebooks") if any(Path("notebooks").glob(PATTERN)) else SOURCE_DIR
    try:
        paths = find_notebooks(names, folder)
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(f"output folder {out} is not writable")
    except (ValueError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(_exit("EXIT_USAGE")) from None
    failed = []
    for path in paths:
        typer.echo(f"{path.stem}: running ({'full' if full else 'small'} sizes) ...")
        run = execute_notebook(path, out=out, results=results, full=full, html=html, timeout=timeout)
        written = ", ".join(str(p) for p in (run.ipynb, run.html) if p is not None)
        status = "ok" if run.error is None else f"FAILED ({run.error})"
        typer.echo(f"{run.name}: {status} in {run.seconds:.1f} s -> {written}")
        if run.error is not None:
            failed.append(run.name)
    if failed:
        typer.echo(f"{len(failed)} of {len(paths)} notebook(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(_exit("EXIT_FAILED"))
