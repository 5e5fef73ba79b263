"""The streaming row reduction: every chunk once, in order, whatever the chunk size and lanes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.streaming import LANES, row_chunk_reduce, row_chunk_sum

# The six 3 x 3 permutation matrices: a non-commutative group, so a product over rows is exact
# (entries stay 0/1) and tells any reordering of the chunks or of their combines apart.
PERMS = np.stack([np.eye(3)[list(p)] for p in itertools.permutations(range(3))])


def ordered_product(mats):
    out = np.eye(3)
    for a in mats:
        out = out @ a
    return out


def chunk_product(M_c):
    """The ordered product of a chunk's matrices, (c, 3, 3) -> (3, 3)."""
    return jax.lax.associative_scan(jnp.matmul, M_c)[-1]


@pytest.mark.parametrize("lanes", [1, 2, 3, LANES])
@pytest.mark.parametrize("m, chunk", [(1, 4), (7, 7), (29, 4), (32, 4), (33, 4), (40, 8), (97, 7)])
def test_every_chunk_once_in_order(m, chunk, lanes):
    idx = np.random.default_rng(m * 31 + chunk).integers(0, len(PERMS), size=m)
    M = PERMS[idx]
    want = ordered_product(M)
    got = jax.jit(lambda M: row_chunk_reduce(chunk_product, jnp.matmul, (M,), chunk, lanes=lanes))(M)
    np.testing.assert_array_equal(got, want)


def test_order_check_catches_a_reversed_reduction():
    """Negative control: the same chunks combined in reverse order give another product."""
    I, s01, s12 = np.eye(3), np.eye(3)[[1, 0, 2]], np.eye(3)[[0, 2, 1]]
    M = np.stack([s01, I, I, I, s12, I, I, I, I])  # chunks of 4: s01, then s12, then I
    for lanes in (1, 2):
        reversed_combine = jax.jit(lambda M: row_chunk_reduce(chunk_product, lambda a, b: b @ a, (M,), 4, lanes=lanes))(M)
        assert not np.array_equal(reversed_combine, ordered_product(M))


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_sum_matches_numpy_to_rounding(lanes):
    x = np.random.default_rng(0).normal(size=(10_001, 5))
    got = row_chunk_sum(lambda x_c: jnp.sum(x_c**2, 0), (x,), 256)
    got_l = jax.jit(lambda x: row_chunk_reduce(lambda x_c: jnp.sum(x_c**2, 0), jnp.add, (x,), 256, lanes=lanes))(x)
    np.testing.assert_allclose(got_l, np.sum(x**2, 0), rtol=1e-12)
    np.testing.assert_allclose(got_l, got, rtol=1e-14)


@pytest.mark.parametrize("lanes", [0, -1, 1.5])
def test_bad_lanes_refused(lanes):
    with pytest.raises(ValueError, match="lanes"):
        row_chunk_reduce(jnp.sum, jnp.add, (jnp.ones(8),), 2, lanes=lanes)
