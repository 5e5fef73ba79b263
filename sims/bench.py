"""``sims bench``: benchmarks (measurements, never tests), written like any other result.

``sims bench ntk`` times the structured and autodiff empirical NTK at growing m
(:mod:`sims.bench_ntk`) and writes ``<out>/bench/ntk-<dtype>.json`` (rows + provenance) and
``.md`` (the table) through :mod:`sims.store`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from sims import store
from sims.cli import register_subcommand
from theory.validation import InputError, check_count


def _factory() -> typer.Typer:
    app = typer.Typer(help="Benchmarks: time and memory, written to <out>/bench/.", no_args_is_help=True)

    @app.command("ntk", epilog="Example: sims bench ntk --m 1e3 --m 1e4 --m 1e5 --m 1e6")
    def ntk(
        m: Optional[List[str]] = typer.Option(None, help="Prefix lengths (repeatable); default 1e3 1e4 1e5 1e6."),
        n: str = typer.Option("128", help="Inputs."),
        d: str = typer.Option("16", help="Feature dimension."),
        model: Optional[List[str]] = typer.Option(None, help="Models (repeatable); default all three."),
        repeats: str = typer.Option("3", help="Timed calls after the warm-up; the best is kept."),
        precision: str = typer.Option("float64", help="float64 or float32."),
        out: Path = typer.Option(Path("results"), help="Output folder."),
    ):
        import jax
        import jax.numpy as jnp

        from sims.bench_ntk import bench_ntk, format_table
        from sims.provenance import provenance

        try:
            ms = [check_count("--m", v) for v in (m or ["1e3", "1e4", "1e5", "1e6"])]
            nn, dd, rep = check_count("--n", n), check_count("--d", d), check_count("--repeats", repeats)
            if precision not in ("float64", "float32"):
                raise InputError(f"--precision must be float64 or float32, got {precision!r}")
        except InputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        jax.config.update("jax_enable_x64", precision == "float64")
        rows = bench_ntk(models=tuple(model or ("exp-sign", "softmax-sign", "prefix")), n=nn, d=dd, ms=ms,
                         repeats=rep, dtype=jnp.dtype(precision),
                         progress=lambda r: typer.echo(f"  {r['model']} m={r['m']}: structured {r['structured_s']:.3g} s"))
        table = format_table(rows)
        folder = Path(out) / "bench"
        store.atomic_write_text(folder / f"ntk-{precision}.json",
                                json.dumps({"rows": rows, "provenance": provenance(precision)}, indent=2))
        store.atomic_write_text(folder / f"ntk-{precision}.md", table + "\n")
        typer.echo(table)

    return app


register_subcommand("bench", _factory, help="Benchmarks (time and memory), written to <out>/bench/.")
