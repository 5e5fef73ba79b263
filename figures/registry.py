"""The figure modules, in build order.

Kept apart from ``figures/__init__`` so that it imports the same way whether ``figures`` is a
regular package or (in an editable install made before it had an ``__init__``) a namespace one.
"""

#: Every figure module; each defines EXPERIMENT, NAME, DEFAULT_WIDTH and plot(run, *, venue, width).
FIGURES = (
    "convergence",
    "kernel",
    "ntk_attention_error",
    "ntk_attention_train",
    "ntk_attention_cost",
    "reparam",
    "lazy_prefix",
    "reparam_identifiability",
)
