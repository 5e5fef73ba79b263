"""Model ``exp-sign``: unnormalised exponential attention with frozen sign values (spec 2.A).

    f(P; x) = m^{-1/2} sum_r a_r exp(<p_r, u>),          a_r ~ Unif{+-1} frozen, u = W x
    df/dp_r = m^{-1/2} a_r exp(<p_r, u>) u
    H_ij    = (1/m) sum_r a_r^2 exp(<p_r, u_i + u_j>) <u_i, u_j>
    H*_ij   = <u_i, u_j> exp(sigma^2 ||u_i + u_j||^2 / 2)

Derivation of H*: for p ~ N(0, sigma^2 I), E exp(<p, s>) = exp(sigma^2 ||s||^2 / 2) (Gaussian
moment generating function) with s = u_i + u_j, and a_r^2 = 1.  Each entry of H is a mean of m
i.i.d. terms, so E H(0) = H* exactly at every m and (see :func:`theory.kernels.ntk_limit.exp_sign_fluctuation`)

    E ||H(0) - H*||_F^2 = (1/m) sum_ij <u_i,u_j>^2 (exp(2 sigma^2 ||s_ij||^2) - exp(sigma^2 ||s_ij||^2)).

Structured NTK: with E_ir = a_r exp(<p_r, u_i>), H = scale^2 (E1 E2^T) * (U1 U2^T), a matmul
over row chunks: O(n^2 m) operations, memory independent of m.  Each chunk holds its operand as
(n, c), so the Gram contracts the minor axis of both factors: about twice the rate of the
(c, n)^T (c, n) form on the CPU measured (docs/scaling.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from theory.kernels.models import StylizedModel, output_scale, register
from theory.scaling.streaming import Reducers, local_reducers

__all__ = ["MODEL"]


def init(*, key, m, d, k=1, sigma=1.0, dtype=jnp.float64, parametrization="ntk"):
    if k != 1:
        raise ValueError(f"k must be 1 for exp-sign (scalar output), got {k}")
    k_P, k_a = jax.random.split(key)
    P = sigma * jax.random.normal(k_P, (m, d), dtype)
    a = jax.random.rademacher(k_a, (m,), dtype)
    return P, {"a": a, "scale": output_scale(m, parametrization, ntk_power=-0.5, dtype=dtype)}


def forward(P, frozen, u):
    return frozen["scale"] * jnp.sum(frozen["a"] * jnp.exp(P @ u))[None]


def ntk_rule(P, frozen, U1, U2, red: Reducers):
    """The structured NTK with the row sums done by ``red`` (``U2=None`` means ``U2 = U1``)."""
    same = U2 is None
    U2 = U1 if same else U2

    def chunk(P_c, a_c):  # operands held as (n, c): a Gram over the minor axis is the faster GEMM
        E1 = a_c * jnp.exp(U1 @ P_c.T)
        return E1 @ (E1 if same else a_c * jnp.exp(U2 @ P_c.T)).T

    G = red.row_sum(chunk, (P, frozen["a"]))
    H = frozen["scale"] ** 2 * G * (U1 @ U2.T)
    return H[:, :, None, None]


def outputs_rule(P, frozen, U, red: Reducers):
    """Outputs (n, 1) for a batch, streamed over rows by ``red``."""
    s = red.row_sum(lambda P_c, a_c: jnp.exp(P_c @ U.T).T @ a_c, (P, frozen["a"]))
    return frozen["scale"] * s[:, None]


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def structured_ntk(P, frozen, U1, U2, chunk_size):
    """``U2=None`` means ``U2 = U1``."""
    return ntk_rule(P, frozen, U1, U2, local_reducers(chunk_size))


def limit_kernel(U1, U2, *, sigma, frozen=None):
    c = U1 @ U2.T
    sq = jnp.sum(U1**2, 1)[:, None] + jnp.sum(U2**2, 1)[None, :] + 2 * c
    return (c * jnp.exp(sigma**2 * sq / 2))[:, :, None, None]


MODEL = register(
    StylizedModel(
        name="exp-sign",
        description="unnormalised exponential attention, frozen sign values, scalar output",
        init=init,
        forward=forward,
        structured_ntk=structured_ntk,
        ntk_rule=ntk_rule,
        outputs_rule=outputs_rule,
        limit_kernel=limit_kernel,
        fixed_k=1,
        logit_multiple=2.0,
        spec="spec section 2.A",
    )
)
