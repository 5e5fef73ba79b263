"""The layers import downwards only: theory <- sims.core/sims.host <- sims.experiments <- sims.cli <- figures.

theory never imports sims or figures; sims.core and sims.host never import sims.experiments,
sims.cli, sims.bench or figures; sims/runtime.py (the run context) imports no layer of sims but
sims.host; nothing in sims imports figures except the `sims figures`
command (sims/cli/figures.py), which calls figures' public entry point, and `sims report`
(sims/cli/report.py), which draws each run's figures for the report; sims/report (the report's
data and pages) takes the figures as bytes.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RULES = {  # folder -> module prefixes it must not import
    "theory": ("sims", "figures"),
    "sims/core": ("sims.experiments", "sims.cli", "sims.bench", "figures"),
    "sims/host": ("sims.experiments", "sims.cli", "sims.bench", "figures"),
    "sims/experiments": ("sims.cli", "figures"),
    "sims/bench": ("sims.cli", "figures"),
    # the run context sits under everything in sims: it reads sims.host only (and theory's InputError)
    "sims/runtime.py": ("sims.core", "sims.experiments", "sims.cli", "sims.bench", "figures"),
    "sims/report": ("sims.cli", "sims.bench", "figures"),
}
ALLOWED = {("sims/cli/figures.py", "figures"), ("sims/cli/report.py", "figures")}


def _imports(source: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def _violations(folder: str, banned: tuple[str, ...], files=None) -> list[str]:
    bad = []
    where = ROOT / folder
    for path in files or ([where] if where.is_file() else sorted(where.rglob("*.py"))):
        rel = str(path.relative_to(ROOT)) if isinstance(path, Path) else path
        src = path.read_text(encoding="utf-8") if isinstance(path, Path) else files[path]
        for mod in _imports(src):
            if any(mod == b or mod.startswith(b + ".") for b in banned) and (rel, mod.split(".")[0]) not in ALLOWED:
                bad.append(f"{rel} imports {mod}")
    return bad


def test_layers_import_downwards_only():
    bad = [v for folder, banned in RULES.items() for v in _violations(folder, banned)]
    assert not bad, bad


def test_layer_check_catches_an_upward_import():
    # Negative control: a theory module importing the engine is reported.
    fake = {"theory/fake.py": "from sims.core import store\nimport numpy as np\n"}
    assert _violations("theory", RULES["theory"], files=fake) == ["theory/fake.py imports sims.core"]
