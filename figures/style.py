"""The shared look of every figure, and the one place figures are written to disk.

- Venue sizes (inches), per call: ``figsize(venue, width)`` with ``width`` "column" or "full":

  ======================  ========  ======
  venue                   column    full
  ======================  ========  ======
  ``acl`` (ACL, EMNLP)    3.03      6.30
  ``iclr``, ``neurips``   5.5       5.5
  ``icml``                3.25      6.75
  ======================  ========  ======

- Fonts: DejaVu Sans (shipped with matplotlib, so every machine renders the same glyphs),
  embedded as TrueType (``pdf.fonttype = ps.fonttype = 42``: no Type 3 fonts), 8 pt labels.
- Rate plots: log-log, the geometric mean over seeds with a 95% confidence band
  (:func:`rate_series`), the predicted slope drawn as a black dashed reference line
  (:func:`reference_slope`, or :func:`verdict_reference` from a verdict row), negative controls
  in grey (``CONTROL``).  A curve that belongs to a claim is labelled with its verdict row's
  numbers (:func:`verdict_label`: slope, interval, status): figures never refit or judge a claim.
- Reproducible files: :func:`save` renders into memory with fixed metadata (no
  ``CreationDate``, fixed producer, fixed ``svg.hashsalt``) and writes through
  :func:`sims.core.store.atomic_write_bytes`, so the same results always give the same bytes.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from sims.core import store
from theory.stats import fit_loglog_slope, t_half_width

__all__ = [
    "VENUES",
    "WIDTHS",
    "FORMATS",
    "PALETTE",
    "CONTROL",
    "REFERENCE",
    "RC",
    "context",
    "figsize",
    "new_figure",
    "panels",
    "side_by_side",
    "rate_series",
    "reference_slope",
    "geometric_band",
    "slope_label",
    "verdict_label",
    "verdict_reference",
    "shows",
    "panel_rows",
    "verdict_line",
    "STATUS_MARK",
    "STATUS_COLOR",
    "panel_label",
    "labelled_panels",
    "compact_number",
    "render",
    "save",
]

#: (column width, full width) in inches.
VENUES: dict[str, tuple[float, float]] = {
    "acl": (3.03, 6.30),
    "emnlp": (3.03, 6.30),
    "iclr": (5.5, 5.5),
    "neurips": (5.5, 5.5),
    "icml": (3.25, 6.75),
}
WIDTHS = ("column", "full")
FORMATS = ("pdf", "png")

#: Okabe-Ito colours (colour-blind safe), in the order series are drawn.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
CONTROL = "#8c8c8c"  # negative controls
REFERENCE = "black"  # predicted slopes and bounds

PNG_DPI = 200

RC: dict[str, object] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "mathtext.fontset": "dejavusans",
    "text.usetex": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "prefix-ntk",
    "pdf.compression": 6,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": "standard",
    "path.simplify": False,
}


@contextlib.contextmanager
def context() -> Iterator[None]:
    """Apply the project style (fonts, sizes, TrueType embedding) inside the block."""
    with matplotlib.rc_context(RC):
        yield


def figsize(venue: str = "acl", width: str = "column", *, aspect: float = 0.75, height: float | None = None):
    """``(width, height)`` in inches for ``venue`` ("acl", "emnlp", "iclr", "neurips", "icml")."""
    venue = venue.lower()
    if venue not in VENUES:
        raise ValueError(f"venue must be one of {', '.join(VENUES)}, got {venue!r}")
    if width not in WIDTHS:
        raise ValueError(f"width must be 'column' or 'full', got {width!r}")
    w = VENUES[venue][0 if width == "column" else 1]
    return (w, float(height) if height is not None else w * aspect)


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of ``size`` inches with constrained layout.

    A plain :class:`matplotlib.figure.Figure`, not a pyplot one: building figures touches no
    global state and works with any backend (saving needs none).  Call inside :func:`context`.
    """
    return Figure(figsize=size, layout="constrained")


def side_by_side(venue: str = "acl", width: str = "full") -> bool:
    """Whether panels sit side by side (a full width wider than 4 in) rather than stacked."""
    return width == "full" and figsize(venue, width)[0] > 4


def panels(n: int, *, venue: str = "acl", width: str = "full", panel_aspect: float = 0.8,
           height: float | None = None):
    """A figure with ``n`` panels: side by side at full width, stacked at column width.

    Call inside :func:`context`.  Returns ``(fig, axes)`` with ``axes`` a flat list.
    """
    w, _ = figsize(venue, width)
    if side_by_side(venue, width):
        h = height if height is not None else min(w / n * panel_aspect + 0.35, 3.6)
        fig = new_figure((w, h))
        axes = fig.subplots(1, n, squeeze=False)
    else:
        h = height if height is not None else n * (w * panel_aspect * 0.78 + 0.15)
        fig = new_figure((w, h))
        axes = fig.subplots(n, 1, squeeze=False)
    return fig, list(axes.reshape(-1))


def labelled_panels(results, drawers, *, venue: str = "acl", width: str = "full",
                    panel_aspect: float | None = None) -> Figure:
    """A figure of one panel per ``(draw, label)`` in ``drawers``: ``draw(ax, results)``, then the label.

    The layout of :func:`panels` (side by side at full width, stacked at column width); the
    default ``panel_aspect`` is 1.45 side by side and 0.95 stacked.  Call inside :func:`context`.
    """
    if panel_aspect is None:
        panel_aspect = 1.45 if side_by_side(venue, width) else 0.95
    fig, axes = panels(len(drawers), venue=venue, width=width, panel_aspect=panel_aspect)
    for ax, (draw, label) in zip(axes, drawers):
        draw(ax, results)
        panel_label(ax, label)
    return fig


def panel_label(ax, text: str) -> None:
    """A bold panel title at the top left of ``ax``: "(a) ..."."""
    ax.set_title(text, loc="left", fontweight="bold")


# ----------------------------------------------------------------------------- rate plots


def geometric_band(Y, *, level: float = 0.95):
    """Geometric mean over seeds and its ``level`` t-interval, per grid point.

    ``Y``: (q, seeds) positive values (NaNs ignored).  Returns ``(center, low, high)``; with a
    single finite seed the band collapses onto the centre.
    """
    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[:, None]
    center, low, high = [], [], []
    for row in Y:
        row = np.where(np.abs(row) < 1e300, row, np.nan)
        v = np.log(row[np.isfinite(row) & (row > 0)])
        if v.size == 0:
            center.append(np.nan), low.append(np.nan), high.append(np.nan)
            continue
        mu = v.mean()
        half = 0.0
        if v.size > 1:
            half = t_half_width(v, level=level)
        with np.errstate(over="ignore"):
            center.append(np.exp(mu)), low.append(np.exp(mu - half)), high.append(np.exp(mu + half))
    return np.array(center), np.array(low), np.array(high)


def slope_label(x, Y, *, short: bool = False) -> str:
    """"slope -0.51 [-0.53, -0.49]": a descriptive log-log slope of a curve that has no claim
    (95% interval over the seeds finite and positive at every x).  It judges nothing: a curve
    that belongs to a claim is labelled from its verdict row (:func:`verdict_label`)."""
    x = np.asarray(x, float)
    Y = np.asarray(Y, float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    keep = np.all(np.isfinite(Y) & (Y > 0), axis=0)
    if x.size < 2 or not keep.any():
        return "slope n/a"
    fit = fit_loglog_slope(x, Y[:, keep])
    return ("" if short else "slope ") + f"{fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]"


STATUS_MARK = {"pass": "\u2713", "fail": "\u2717", "undecided": "?"}
STATUS_COLOR = {"pass": "#009E73", "fail": "#D55E00", "undecided": "#E69F00"}


def verdict_label(row, *, short: bool = False) -> str:
    """A rate row's numbers as a legend text, "slope -0.51 [-0.53, -0.49] \u2713": the verdict's own
    estimate, interval and status (never refitted); "diverged" when the row has no estimate."""
    d = row if isinstance(row, dict) else row.as_dict()
    mark = STATUS_MARK.get(d.get("status"), "?")
    if d.get("estimate") is None:
        return f"{d.get('measured') or 'n/a'} {mark}"
    return ("" if short else "slope ") + f"{d['estimate']:.2f} [{d['low']:.2f}, {d['high']:.2f}] {mark}"


def shows(ax, *rows, panel: str | None = None) -> None:
    """Record that panel ``ax`` draws these verdict rows (dicts or ids; None is skipped).

    The report (:mod:`sims.cli.report`) reads the record back with :func:`panel_rows` and links
    each claim to the panels that plot it, and each figure to the rows it shows.  ``panel`` names
    the panel when its title (:func:`panel_label`) is not the name to use.
    """
    ids = [r if isinstance(r, str) else str((r if isinstance(r, dict) else r.as_dict()).get("id") or "")
           for r in rows if r is not None]
    record = ax.figure.__dict__.setdefault("_verdict_panels", [])
    record.extend((ax, panel, i) for i in ids if i)


def panel_rows(fig) -> dict[str, list[str]]:
    """``{panel name: [row id, ...]}`` of what :func:`shows` recorded on ``fig``, panels in drawing
    order; a panel is named by its ``panel`` argument, else its bold title ("(a) ...", up to a
    colon), else its position ("panel 2")."""
    axes = list(fig.axes)
    out: dict[str, list[str]] = {}
    for ax, panel, rid in fig.__dict__.get("_verdict_panels", []):
        title = ax.get_title(loc="left").split(":")[0].strip()  # "(c) verdict: the stored ..." -> "(c) verdict"
        name = panel or title or f"panel {axes.index(ax) + 1 if ax in axes else '?'}"
        ids = out.setdefault(name, [])
        if rid not in ids:
            ids.append(rid)
    return out


def verdict_reference(ax, x, row, *, through: tuple[float, float], label: str | None = None, **kw) -> None:
    """The predicted power law of a rate row (its ``target`` exponent) through ``through``."""
    d = row if isinstance(row, dict) else row.as_dict()
    reference_slope(ax, x, float(d["target"]), through=through,
                    label=label if label is not None else f"predicted slope {d['target']:g}", **kw)


def verdict_line(ax, x, centre, row, *, color=None, linestyle="-", linewidth: float = 1.0, label=None) -> bool:
    """A rate row's fitted power law, ``estimate`` as the exponent, through the centroid of the
    plotted centres in log-log (where an OLS fit of ``log centre`` on ``log x`` passes): the
    verdict's slope drawn over the data, never refitted.  Records the row (:func:`shows`).
    Returns False (nothing drawn) when the row has no finite estimate or no centre is positive."""
    d = row if isinstance(row, dict) else row.as_dict()
    est = d.get("estimate")
    x, c = np.asarray(x, float), np.asarray(centre, float)
    ok = np.isfinite(c) & (c > 0) & np.isfinite(x) & (x > 0)
    shows(ax, d)
    if est is None or not np.isfinite(est) or not ok.any():
        return False
    lx, lc = np.log(x[ok]), np.log(c[ok])
    xs = np.geomspace(x[ok].min(), x[ok].max(), 32)
    ax.plot(xs, np.exp(lc.mean() + float(est) * (np.log(xs) - lx.mean())), color=color, linestyle=linestyle,
            linewidth=linewidth, label=label, zorder=2)
    return True


def rate_series(ax, x, Y, *, label: str, color=None, control: bool = False, marker: str = "o",
                row=None, normalize: bool = False, band: bool = True, linestyle=None):
    """Plot the geometric mean of ``Y`` (q, seeds) against ``x`` with its 95% band over seeds.

    ``control=True`` draws a negative control: grey, hollow markers, dotted.  With ``row`` (the
    curve's verdict row) the legend label gets the verdict's slope, interval and status
    (:func:`verdict_label`).  With
    ``normalize`` the series is divided by its first geometric mean (rates then share an axis).
    Returns the plotted centre line.
    """
    x = np.asarray(x, float)
    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[:, None]
    center, low, high = geometric_band(Y)
    if normalize and np.isfinite(center[0]) and center[0] > 0:
        scale = center[0]
        center, low, high, Y = center / scale, low / scale, high / scale, Y / scale
    if control:
        color = CONTROL
    if row is not None:
        label = f"{label}: {verdict_label(row)}"
        shows(ax, row)
    style = dict(color=color, marker=marker, label=label,
                 linestyle=linestyle or (":" if control else "-"))
    if control:
        style.update(markerfacecolor="white", markeredgecolor=CONTROL)
    (line,) = ax.plot(x, center, **style)
    if band and Y.shape[1] > 1:
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18 if not control else 0.12, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return line


def reference_slope(ax, x, slope: float, *, through: tuple[float, float], label: str | None = None,
                    color=REFERENCE, linestyle="--", linewidth: float = 0.9) -> None:
    """The predicted power law ``y = y0 (x / x0)^slope`` over the range of ``x``, through ``through``."""
    x = np.asarray(x, float)
    xs = np.geomspace(x.min(), x.max(), 32)
    x0, y0 = through
    if label is None:
        label = f"predicted slope {slope:g}"
    ax.plot(xs, y0 * (xs / x0) ** slope, color=color, linestyle=linestyle, linewidth=linewidth, label=label,
            zorder=1)


# ----------------------------------------------------------------------------- output


def _metadata(fmt: str) -> dict[str, object]:
    if fmt == "pdf":
        return {"Creator": "prefix-ntk figures", "Producer": "matplotlib", "CreationDate": None}
    if fmt == "png":
        return {"Software": "prefix-ntk figures (matplotlib)"}
    if fmt == "svg":
        return {"Date": None, "Creator": "prefix-ntk figures"}
    return {}


def render(fig, fmt: str, *, dpi: int = PNG_DPI) -> bytes:
    """The bytes of ``fig`` in format ``fmt`` ("pdf", "png", "svg"), with fixed metadata."""
    buf = io.BytesIO()
    with context():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return buf.getvalue()


def save(fig, out: str | Path, name: str, *, formats: Iterable[str] = FORMATS, dpi: int = PNG_DPI) -> list[Path]:
    """Write ``out/name.<fmt>`` for each format, atomically (:mod:`sims.core.store`); return the paths."""
    formats = list(formats)
    bad = [f for f in formats if f not in ("pdf", "png", "svg")]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}; use pdf, png or svg")
    return [store.atomic_write_bytes(Path(out) / f"{name}.{fmt}", render(fig, fmt, dpi=dpi)) for fmt in formats]


def legend(ax, *, loc="best", ncol: int = 1, below: bool = False, **kw) -> None:
    """A compact legend (no frame), skipped when ``ax`` has nothing labelled.

    ``below=True`` puts it under the axes (constrained layout makes room for it).
    """
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if below:
        # Anchored a fixed distance under the axes (below tick labels and x label), whatever its height.
        shift = ScaledTranslation(0, -0.4, ax.figure.dpi_scale_trans)
        kw = {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0), "bbox_transform": ax.transAxes + shift,
              "columnspacing": 1.0, **kw}
        ax.legend(ncol=ncol, **kw)
    else:
        ax.legend(loc=loc, ncol=ncol, **kw)


def xticks_from(ax, values: Sequence[float]) -> None:
    """Major ticks at the measured grid values, labelled compactly (1e3 -> "10³" style)."""
    ax.set_xticks(list(values))
    ax.set_xticklabels([compact_number(v) for v in values])
    ax.minorticks_off()


def compact_number(v: float) -> str:
    """``v`` short for a tick or label: ``1,000``, ``16k``, or a power of ten in TeX."""
    v = float(v)
    if 0 < v < 1e4 and abs(v - round(v)) < 1e-9:
        return f"{int(round(v)):,}"
    if 1e4 <= v < 1e7:
        return f"{v / 1e3:.3g}k"
    e = int(np.floor(np.log10(v))) if v > 0 else 0
    mant = v / 10**e
    if abs(mant - 1) < 1e-9:
        return f"$10^{{{e}}}$"
    return f"${mant:.2g}\\cdot10^{{{e}}}$"
