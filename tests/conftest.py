"""Test-suite setup: shape checks on ``theory``, the run context at float64 (the standard for this
project), deterministic hypothesis."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

# The shapes written in the model contract (jaxtyping: theory.contracts and the modules that
# implement it) are checked by beartype on every call in the tests, as diffrax does; at runtime
# nothing checks them.  Only these modules: the public functions elsewhere in theory validate
# their arguments themselves and must raise theory.InputError, not a type-check error.  The hook
# must be installed before anything imports theory.
import jaxtyping  # noqa: E402

TYPED_MODULES = ("theory.contracts", "theory.kernels.exp_sign", "theory.kernels.softmax_sign",
                 "theory.kernels.prefix", "theory.transformer.model", "theory.transformer.trainable",
                 "theory.transformer.adapters", "theory.transformer.train", "theory.transformer.lazy")
jaxtyping.install_import_hook(TYPED_MODULES, "beartype.beartype")

import sims  # noqa: E402

# float64 for the whole session, through the one run context (sims.runtime); left at exit.
_RUN_CONTEXT = sims.context(precision="float64")
_RUN_CONTEXT.__enter__()


def pytest_unconfigure(config):
    _RUN_CONTEXT.__exit__(None, None, None)


from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_results(tmp_path_factory):
    """A results folder with every experiment run once at small size (tests/fixtures/shared_results.py)."""
    spec = importlib.util.spec_from_file_location("prefix_ntk_shared_results",
                                                  Path(__file__).parent / "fixtures" / "shared_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.small_results_dir(tmp_path_factory)
