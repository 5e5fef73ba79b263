"""A small real transformer with a trainable prefix, for measuring how lazy prefix-tuning is.

- :mod:`theory.transformer.model`: the pre-layernorm transformer, per-layer prefix (direct or
  paper 2's MLP reparameterisation), exact prefix attention via :func:`theory.prefix_attention`;
- :mod:`theory.transformer.tasks`: modular-arithmetic tasks regenerated from a key;
- :mod:`theory.transformer.train`: pre-training, NTK/standard output scaling, GD and Adam;
- :mod:`theory.transformer.lazy`: prefix NTK, kernel/parameter movement, the linearised model;
- :mod:`theory.transformer.adapters`: LoRA of matched size and NTK-Attention, for comparison.

Not imported by ``theory/__init__``: ``import theory.transformer.model`` etc.
"""
