"""The reproduction report: what ``sims report`` and ``sims reproduce`` write.

- :mod:`sims.report.catalog`: the claims table of the README as data (experiment, paper, section
  of ``docs/theory.md``, the quick and full sizes, the command).
- :mod:`sims.report.collect`: stored run manifests -> one record per claim (numbers, status,
  control, provenance, command), and the summary counts.
- :mod:`sims.report.build`: the records -> ``index.html`` (self-contained, Jinja2), ``report.md``
  and ``verdicts.json``, written through :mod:`sims.core.store`.

Figures are drawn by the caller (:mod:`sims.cli.report`) and passed in as PNG bytes, so this
package never imports matplotlib or the figures.
"""
