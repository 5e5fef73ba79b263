"""Synthetic modular-arithmetic tasks that the suite regenerates from a key.

A sequence has ``T`` tokens: ``T - 1`` digits drawn uniformly from ``Z_p`` (token ids 0..p-1)
and a final query token ``=`` (id p).  Two marked positions ``a = 0`` and ``b = T // 2`` carry
the operands; the other digits are distractors.  The answer is a digit:

- ``"add"`` (the pre-training task): ``y = (x_a + x_b) mod p``;
- ``"sub"`` (the downstream task): ``y = (x_a - x_b) mod p``, which needs the same two
  tokens but a different map;
- ``"first"``: ``y = x_a`` (a copy task, for checks).

The model reads its answer at the last position (the ``=`` token) from the first ``p``
logits, so ``vocab = p + 1`` and ``k = p``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory import validation as _v

__all__ = ["TASKS", "operand_positions", "sample", "targets", "one_hot_targets", "accuracy"]

TASKS = ("add", "sub", "first")


def operand_positions(T: int) -> tuple[int, int]:
    """Positions ``(a, b)`` of the two operands in a sequence of length T (T >= 3).

    Args:
        T: sequence length (not checked).
    Returns:
        ``(0, T // 2)``, Python ints.
    Raises:
        Nothing (``T // 2`` fails with TypeError for non-numbers).
    """
    return 0, T // 2


def _check(task, p, T):
    if task not in TASKS:
        raise _v.InputError(f"task must be one of {TASKS}, got {task!r}")
    _v.check_count("p", p)
    _v.check_count("T", T)
    if p < 2:
        raise _v.InputError(f"p must be >= 2, got {p}")
    if T < 3:
        raise _v.InputError(f"T must be >= 3, got {T}")


def targets(task: str, tokens, p: int):
    """Answers for sequences ``tokens``.

    Args:
        task: ``'add'``, ``'sub'``; any other value gives the ``'first'`` answer ``x_a``.
        tokens: sequences, (n, T) int array.
        p: the modulus.
    Returns:
        Answers, (n,) int.
    Raises:
        Nothing of its own (unvalidated; see :func:`sample`).
    """
    a, b = operand_positions(tokens.shape[1])
    xa, xb = tokens[:, a], tokens[:, b]
    if task == "add":
        return (xa + xb) % p
    if task == "sub":
        return (xa - xb) % p
    return xa


def sample(task: str, n: int, *, key, p: int, T: int):
    """n random sequences of ``task`` and their answers.

    Args:
        task: one of ``TASKS``; n: number of sequences; key: JAX PRNG key;
        p: the modulus (>= 2); T: sequence length (>= 3).
    Returns:
        ``(tokens, y)``: sequences (n, T) int32 ending in the ``=`` token (id p), answers (n,).
    Raises:
        InputError: unknown task, p or T not an integer, p < 2, T < 3 or n < 1.
    """
    _check(task, p, T)
    _v.check_count("n", n)
    digits = jax.random.randint(key, (n, T - 1), 0, p, dtype=jnp.int32)
    tokens = jnp.concatenate([digits, jnp.full((n, 1), p, jnp.int32)], axis=1)
    return tokens, targets(task, tokens, p)


def one_hot_targets(y, k: int, dtype=jnp.float64):
    """Regression targets for the squared loss: one-hot minus 1/k (centred), as in NTK regression.

    Args:
        y: answers, (n,) int; k: number of classes; dtype: of the result.
    Returns:
        Targets, (n, k).
    Raises:
        Nothing of its own (``jax.nn.one_hot``'s errors pass through).
    """
    return jax.nn.one_hot(y, k, dtype=dtype) - 1.0 / k


def accuracy(F, y):
    """Fraction of rows of F whose argmax is y.

    Args:
        F: outputs, (n, k); y: answers, (n,) int.
    Returns:
        A scalar array in [0, 1].
    Raises:
        Nothing of its own (shapes are not checked).
    """
    return jnp.mean(jnp.argmax(F, axis=-1) == y)
