"""Model ``softmax-sign``: softmax attention over the prefix, frozen sign values (spec 2.B).

    F_l(P; x) = sqrt(m) sum_r S_r(x) a_{lr},      S(x) = softmax_r(<p_r, u>),  a_{lr} ~ Unif{+-1}
    dF_l/dp_r = sqrt(m) S_r (a_{lr} - abar_l(x)) u,      abar_l(x) = sum_r S_r(x) a_{lr}
    H[(i,l),(j,l')] = m <u_i,u_j> sum_r S_r(x_i) S_r(x_j) (a_{lr} - abar_l(x_i)) (a_{l'r} - abar_{l'}(x_j))
    H*[(i,l),(j,l')] = delta_{ll'} <u_i, u_j> exp(sigma^2 <u_i, u_j>)

Derivation of H*: as m -> oo, sum_s exp(<p_s,u>) / m -> E exp(<p,u>) = exp(sigma^2 ||u||^2 / 2),
so S_r(x) ~ exp(<p_r,u>) / (m exp(sigma^2||u||^2/2)); abar_l -> E a = 0 because a is
independent of P; E a_{lr} a_{l'r} = delta_{ll'}.  Hence
H -> delta_{ll'} <u_i,u_j> E exp(<p, u_i+u_j>) / exp(sigma^2 (||u_i||^2 + ||u_j||^2)/2)
   = delta_{ll'} <u_i,u_j> exp(sigma^2 <u_i,u_j>).
The finite-m kernel is a ratio estimator: its mean differs from H* by O(1/m) and it
fluctuates by O(1/sqrt(m)).

Structured NTK: two streamed passes over the rows (softmax statistics, then the kernel);
with B_{r,(i,l)} = S_ri (a_lr - abar_il), H = scale^2 (B1^T B2) * <u_i,u_j>: O(n^2 k^2 m).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from theory.kernels.models import StylizedModel, output_scale, register
from theory.scaling.streaming import Reducers, local_reducers

__all__ = ["MODEL", "softmax_weights_stats"]


def init(*, key, m, d, k=1, sigma=1.0, dtype=jnp.float64, parametrization="ntk"):
    k_P, k_a = jax.random.split(key)
    P = sigma * jax.random.normal(k_P, (m, d), dtype)
    a = jax.random.rademacher(k_a, (k, m), dtype)
    return P, {"a": a, "scale": output_scale(m, parametrization, ntk_power=0.5, dtype=dtype)}


def forward(P, frozen, u):
    S = jax.nn.softmax(P @ u)
    return frozen["scale"] * (frozen["a"] @ S)


def softmax_weights_stats(P, a_rows, U, red: Reducers):
    """Per-input ``(mx, s, abar)``: max logit, normaliser and the softmax average of ``a_rows``."""
    mx, s, w = red.online_softmax(lambda P_c, a_c: P_c @ U.T, lambda P_c, a_c: a_c, (P, a_rows))
    return mx, s, w / s[:, None]


def ntk_rule(P, frozen, U1, U2, red: Reducers):
    """The structured NTK with the row reductions done by ``red`` (``U2=None`` means ``U2 = U1``)."""
    a_rows = frozen["a"].T  # (m, k)
    k = a_rows.shape[1]
    same = U2 is None
    U2 = U1 if same else U2
    st1 = softmax_weights_stats(P, a_rows, U1, red)
    st2 = st1 if same else softmax_weights_stats(P, a_rows, U2, red)

    def operand(P_c, a_c, U, stats):  # held as (n k, c): the Gram contracts the minor axis
        mx, s, abar = stats
        S = jnp.exp(U @ P_c.T - (mx + jnp.log(s))[:, None])  # (n, c): the softmax, 1/s in the shift
        B = S[:, None, :] * (a_c.T[None, :, :] - abar[:, :, None])  # (n, k, c)
        return B.reshape(-1, B.shape[-1])

    def chunk(P_c, a_c):
        B1 = operand(P_c, a_c, U1, st1)
        return B1 @ (B1 if same else operand(P_c, a_c, U2, st2)).T

    G = red.row_sum(chunk, (P, a_rows))
    n1, n2 = U1.shape[0], U2.shape[0]
    G = G.reshape(n1, k, n2, k).transpose(0, 2, 1, 3)
    return frozen["scale"] ** 2 * G * (U1 @ U2.T)[:, :, None, None]


def outputs_rule(P, frozen, U, red: Reducers):
    """Outputs (n, k) for a batch, streamed over rows by ``red``."""
    return frozen["scale"] * softmax_weights_stats(P, frozen["a"].T, U, red)[2]


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def structured_ntk(P, frozen, U1, U2, chunk_size):
    """``U2=None`` means ``U2 = U1`` (one softmax pass and one operand instead of two)."""
    return ntk_rule(P, frozen, U1, U2, local_reducers(chunk_size))


def limit_kernel(U1, U2, *, sigma, frozen):
    k = frozen["a"].shape[0]
    c = U1 @ U2.T
    return (c * jnp.exp(sigma**2 * c))[:, :, None, None] * jnp.eye(k, dtype=c.dtype)


MODEL = register(
    StylizedModel(
        name="softmax-sign",
        description="softmax attention over the prefix, frozen sign values, k outputs",
        init=init,
        forward=forward,
        structured_ntk=structured_ntk,
        ntk_rule=ntk_rule,
        outputs_rule=outputs_rule,
        limit_kernel=limit_kernel,
        spec="spec section 2.B",
    )
)
