"""The typed contract of a model: its array records and the signatures of its functions.

A model's frozen arrays (everything but the trainable prefix P) form one typed record, a
subclass of :class:`FrozenArrays` declared with :func:`frozen_record`: a frozen dataclass
registered as a JAX pytree, so it passes through ``jit``, ``vmap`` and ``grad`` like a dict did,
with attributes instead of string keys.  The arrays that training moves, when they are more than
one array (the transformer's adapters, :mod:`theory.transformer.trainable`), form the same kind
of record, a subclass of :class:`TrainableArrays` declared with :func:`trainable_record`.  The
functions a model supplies (:class:`theory.kernels.models.StylizedModel`) are typed by the
Protocols below.

Shapes are written in the signatures with jaxtyping (``Float[Array, "m d"]``).  Nothing checks
them at runtime: the test suite installs jaxtyping's import hook with beartype
(``tests/conftest.py``), which checks every annotated call, and the records' fields when a
record is built.  The public functions of :mod:`theory` still validate their inputs eagerly and
raise :class:`theory.InputError` (:mod:`theory.validation`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, TypeVar, runtime_checkable

import jax
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from theory import validation as _v
from theory.streaming import Reducers

__all__ = ["ArrayRecord", "FrozenArrays", "frozen_record", "TrainableArrays", "trainable_record", "Init", "Forward",
           "NtkRule", "StructuredNtk", "OutputsRule", "LimitKernel", "Fluctuation"]

R = TypeVar("R", bound="ArrayRecord")


class ArrayRecord:
    """Base of the typed array records: named arrays (fields annotated with their shapes) that
    form one pytree.  ``record.replace(V=V)`` is a copy with some fields replaced."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the record's arrays, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self: R, **values) -> R:
        """A copy with the named fields replaced.

        Raises:
            InputError: a name that is not a field of the record.
        """
        unknown = sorted(set(values) - set(self.field_names()))
        if unknown:
            raise _v.InputError(f"{type(self).__name__} has no field(s) {unknown}; "
                                f"its fields: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **values)


class FrozenArrays(ArrayRecord):
    """Base of the frozen records: a model's arrays that training does not move (declared with
    :func:`frozen_record`)."""


class TrainableArrays(ArrayRecord):
    """Base of the trainable records: the arrays an optimiser moves, one record per kind of
    trainable parameters (declared with :func:`trainable_record`)."""


def frozen_record(cls: type[R]) -> type[R]:
    """Declare ``cls`` (a :class:`FrozenArrays` subclass) a frozen dataclass and a JAX pytree.

    Every field is a pytree child (an array).  Unflattening (``jit``, ``vmap``, ``tree_map``)
    rebuilds the record without calling ``__init__``: a tree of tracers, shardings or shapes
    passes through, and only a record built by hand has its fields checked (under the test
    suite's beartype hook).
    """
    return _array_record(cls, FrozenArrays)


def trainable_record(cls: type[R]) -> type[R]:
    """Declare ``cls`` (a :class:`TrainableArrays` subclass) a frozen dataclass and a JAX pytree,
    as :func:`frozen_record` does.  The pytree leaves are the fields in declaration order (a field
    may be ``None``: no leaf), which is the order of every flattened copy and of every sum over
    leaves (an NTK summed over parameter blocks, a norm)."""
    return _array_record(cls, TrainableArrays)


def _array_record(cls, base):
    if not issubclass(cls, base):
        raise TypeError(f"{cls.__name__} must subclass {base.__name__}")
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)  # eq=False: arrays have no truth value
    names = cls.field_names()

    def flatten(record):
        return [(jax.tree_util.GetAttrKey(n), getattr(record, n)) for n in names], None

    def unflatten(_, children):
        record = object.__new__(cls)
        for n, child in zip(names, children):
            object.__setattr__(record, n, child)
        return record

    jax.tree_util.register_pytree_with_keys(cls, flatten, unflatten)
    return cls


# ----------------------------------------------------------------------------- the model's functions


@runtime_checkable
class Init(Protocol):
    """``init(*, key, m, d, k, sigma, dtype, parametrization) -> (P, frozen)``: P (m, d) with rows
    i.i.d. N(0, sigma^2 I_d) and the model's frozen record (arguments validated by the caller)."""

    def __call__(self, *, key: PRNGKeyArray, m: int, d: int, k: int, sigma: ScalarLike, dtype,
                 parametrization: str) -> tuple[Float[Array, "m d"], FrozenArrays]: ...


@runtime_checkable
class Forward(Protocol):
    """``forward(P, frozen, u) -> (k,)``: the model output for one input ``u = W x``."""

    def __call__(self, P: Float[Array, "m d"], frozen: FrozenArrays, u: Float[Array, " d"]) -> Float[Array, " k"]: ...


@runtime_checkable
class NtkRule(Protocol):
    """``ntk_rule(P, frozen, U1, U2, red) -> H`` (n1, n2, k, k): the structured NTK with its row
    reductions taken from ``red`` (one device or sharded); ``U2=None`` means ``U2 = U1``."""

    def __call__(self, P: Float[Array, "m d"], frozen: FrozenArrays, U1: Float[Array, "n1 d"],
                 U2: Float[Array, "n2 d"] | None, red: Reducers) -> Float[Array, "n1 n2 k k"]: ...


@runtime_checkable
class StructuredNtk(Protocol):
    """``structured_ntk(P, frozen, U1, U2, chunk_size) -> H`` (n1, n2, k, k): the rule streamed on
    one device and jitted (``chunk_size`` static)."""

    def __call__(self, P: Float[Array, "m d"], frozen: FrozenArrays, U1: Float[Array, "n1 d"],
                 U2: Float[Array, "n2 d"] | None, chunk_size: int) -> Float[Array, "n1 n2 k k"]: ...


@runtime_checkable
class OutputsRule(Protocol):
    """``outputs_rule(P, frozen, U, red) -> F`` (n, k): the outputs of a batch, rows reduced by ``red``."""

    def __call__(self, P: Float[Array, "m d"], frozen: FrozenArrays, U: Float[Array, "n d"],
                 red: Reducers) -> Float[Array, "n k"]: ...


@runtime_checkable
class LimitKernel(Protocol):
    """``limit_kernel(U1, U2, *, sigma, frozen) -> H*`` (n1, n2, k, k): the closed-form
    infinite-prefix kernel; it reads only the m-independent fields of ``frozen`` named by the
    model's ``limit_reads`` (``frozen`` may be None when that is empty)."""

    def __call__(self, U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"], *, sigma: ScalarLike,
                 frozen: FrozenArrays | None) -> Float[Array, "n1 n2 k k"]: ...


@runtime_checkable
class Fluctuation(Protocol):
    """``fluctuation(U, *, sigma) -> C``: the exact ``E m ||H(0) - H*||_F^2`` (a scalar)."""

    def __call__(self, U: Float[Array, "n d"], *, sigma: float) -> Float[Array, ""]: ...
