"""``sims bench``: benchmarks (measurements, never tests), written like any other result.

``sims bench ntk`` times the structured and autodiff empirical NTK at growing m
(:mod:`sims.bench.ntk`) and writes ``<out>/bench/ntk-<dtype>.json`` (rows + provenance) and
``.md`` (the table) through :mod:`sims.core.store`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import jax.numpy as jnp
import typer

import theory as T
from sims import runtime
from sims.core import store
from sims.core.provenance import provenance
from theory.validation import InputError, check_count, check_positive


def _check_models_and_precision(model, precision: str) -> tuple[str, ...]:
    """The requested models (default: every registered one), each known, and a known precision."""
    if precision not in runtime.PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(runtime.PRECISIONS)}, got {precision!r}")
    models = tuple(model or T.model_names())
    for name in models:
        T.get_model(name)
    return models


def _save(out: Path, stem: str, payload: dict, table: str) -> None:
    """``<out>/bench/<stem>.json`` (rows, provenance) and ``.md`` (the table), each written atomically."""
    folder = Path(out) / "bench"
    store.atomic_write_text(folder / f"{stem}.json", json.dumps(payload, indent=2, default=float))
    store.atomic_write_text(folder / f"{stem}.md", table + "\n")


def _factory() -> typer.Typer:
    app = typer.Typer(help="Benchmarks: time and memory, written to <out>/bench/.", no_args_is_help=True)

    @app.command("ntk", epilog="Example: sims bench ntk --m 1e3 --m 1e4 --m 1e5 --m 1e6")
    def ntk(
        m: Optional[List[str]] = typer.Option(None, help="Prefix lengths (repeatable); default 1e3 1e4 1e5 1e6."),
        n: str = typer.Option("128", help="Inputs."),
        d: str = typer.Option("16", help="Feature dimension."),
        model: Optional[List[str]] = typer.Option(None, help="Models (repeatable); default every registered model."),
        repeats: str = typer.Option("3", help="Timed calls after the warm-up; the best is kept."),
        precision: str = typer.Option("float64", help="float64 or float32."),
        out: Path = typer.Option(Path("results"), help="Output folder."),
    ):
        from sims.bench.ntk import bench_ntk, format_table  # lazy: a benchmark's modules load only when it runs

        try:
            ms = [check_count("--m", v) for v in (m or ["1e3", "1e4", "1e5", "1e6"])]
            nn, dd, rep = check_count("--n", n), check_count("--d", d), check_count("--repeats", repeats)
            models = _check_models_and_precision(model, precision)
        except InputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        with runtime.context(precision):  # x64 (sims.runtime), restored after
            rows = bench_ntk(models=models, n=nn, d=dd, ms=ms,
                             repeats=rep, dtype=jnp.dtype(precision),
                             progress=lambda r: typer.echo(f"  {r['model']} m={r['m']}: structured {r['structured_s']:.3g} s"))
            table = format_table(rows)
            _save(out, f"ntk-{precision}", {"rows": rows, "provenance": provenance(precision)}, table)
            typer.echo(table)

    @app.command("suite", epilog="Example: sims bench suite --m 1e3 --m 1e4 --m 1e5 --n 32 --n 128")
    def suite(
        m: Optional[List[str]] = typer.Option(None, help="Prefix lengths (repeatable); default 1e3 1e4 1e5."),
        n: Optional[List[str]] = typer.Option(None, help="Numbers of inputs (repeatable); default 32 128."),
        d: str = typer.Option("16", help="Feature dimension."),
        k: str = typer.Option("1", help="Output dimension (exp-sign always 1)."),
        model: Optional[List[str]] = typer.Option(None, help="Models (repeatable); default every registered model."),
        impl: Optional[List[str]] = typer.Option(
            None, help="NTK implementations (repeatable): structured autodiff nt-jc nt-nvp nt-sd; default all."),
        repeats: str = typer.Option("3", help="Timed calls after the warm-up; the best is kept."),
        budget_gib: float = typer.Option(4.0, help="Memory budget (GiB): skips, and the largest-m table."),
        max_seconds: float = typer.Option(60.0, help="Skip a call whose time extrapolated in m exceeds this."),
        gd: bool = typer.Option(True, help="Also time one gradient-descent step of each kind."),
        gd_m: Optional[List[str]] = typer.Option(None, help="Prefix lengths of the GD-step table; default 1e4 1e5."),
        fit: bool = typer.Option(True, help="Also fit the largest m within the budget (compiles, does not run)."),
        fit_m: Optional[List[str]] = typer.Option(None, help="The two m at which memory is probed; default 8192 32768."),
        gemm_size: str = typer.Option("2048", help="Side of the square GEMM that measures the matmul rate."),
        chunk_size: str = typer.Option("4096", help="Structured NTK chunk size."),
        precision: str = typer.Option("float64", help="float64 or float32."),
        out: Path = typer.Option(Path("results"), help="Output folder."),
    ):
        """Structured vs autodiff vs neural-tangents NTKs, matmul roofline, GD step, largest m in a budget."""
        from sims.bench import suite as bs  # lazy: a benchmark's modules load only when it runs

        try:
            ms = [check_count("--m", v) for v in (m or ["1e3", "1e4", "1e5"])]
            ns = [check_count("--n", v) for v in (n or ["32", "128"])]
            gd_ms = [check_count("--gd-m", v) for v in (gd_m or ["1e4", "1e5"])]
            fit_ms = [check_count("--fit-m", v) for v in (fit_m or ["8192", "32768"])]
            if len(fit_ms) != 2 or fit_ms[0] == fit_ms[1]:
                raise InputError("--fit-m needs exactly two different values")
            impls = tuple(impl or bs.IMPLS)
            bad = [i for i in impls if i not in bs.IMPLS]
            if bad:
                raise InputError(f"--impl must be among {', '.join(bs.IMPLS)}; got {', '.join(bad)}")
            check_positive("--budget-gib", budget_gib), check_positive("--max-seconds", max_seconds)
            dd, kk, rep = check_count("--d", d), check_count("--k", k), check_count("--repeats", repeats)
            gs, cs = check_count("--gemm-size", gemm_size), check_count("--chunk-size", chunk_size)
            models = _check_models_and_precision(model, precision)
        except InputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        with runtime.context(precision):  # x64 (sims.runtime), restored after
            before = bs.machine_info()

            def progress(r):
                if "time_s" in r:
                    t = "-" if r["time_s"] is None else f"{r['time_s']:.3g} s"
                    typer.echo(f"  {r['model']} n={r['n']} m={r['m']} {r['impl']}: {t} {r['note']}".rstrip())

            res = bs.run_suite(models=models, ms=ms, ns=ns, d=dd, k=kk, impls=impls, repeats=rep,
                               memory_budget=int(budget_gib * 2**30), max_seconds=max_seconds, gd=gd, gd_ms=gd_ms,
                               fit=fit, fit_probes=tuple(fit_ms), gemm_size=gs, chunk_size=cs,
                               dtype=jnp.dtype(precision), progress=progress)
            res["machine"] = {"before": before, "after": bs.machine_info()}
            res["provenance"] = provenance(precision)
            table = bs.format_suite(res, bs.describe_machine(before, res["machine"]["after"]))
            _save(out, f"suite-{precision}", res, table)
            typer.echo(table)

    return app


def app() -> typer.Typer:
    """The ``sims bench`` command group (wired into ``sims`` by :func:`sims.cli.app.build_app`)."""
    return _factory()
