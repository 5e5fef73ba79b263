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

Sizes (read by the memory plan and the benchmarks from :data:`MODEL`): the Gram operand B has
k columns per input; a chunk holds about 4 + 2k numbers per (row, input) (logits, softmax, B);
the frozen signs are k numbers per row (axis 1 of ``frozen.a``); per row the kernel costs
two passes of logits 4nd, the softmax 5n, averages and operand 4nk and the Gram 2(nk)^2 flops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from theory.contracts import FrozenArrays, frozen_record
from theory.kernels.models import StylizedModel, output_scale, register, single_device_ntk
from theory.streaming import Reducers

__all__ = ["MODEL", "SoftmaxSignFrozen", "softmax_weights_stats"]


@frozen_record
class SoftmaxSignFrozen(FrozenArrays):
    """The frozen arrays of ``softmax-sign``: k signs per prefix row and the output scale."""

    a: Float[Array, "k m"]  # a_{lr} ~ Unif{+-1}; H* reads only k, the number of rows
    scale: Float[Array, ""]  # m^{1/2} (NTK) or 1 (mean-field)


def init(*, key: PRNGKeyArray, m: int, d: int, k: int = 1, sigma: ScalarLike = 1.0, dtype=jnp.float64,
         parametrization: str = "ntk") -> tuple[Float[Array, "{m} {d}"], SoftmaxSignFrozen]:
    """Draw P (m, d) with rows i.i.d. N(0, sigma^2 I_d) and
    ``frozen = SoftmaxSignFrozen(a=signs (k, m), scale=m^1/2)``.

    The arguments are those of :func:`theory.init_model`, which validates them and calls this.
    """
    k_P, k_a = jax.random.split(key)
    P = sigma * jax.random.normal(k_P, (m, d), dtype)
    a = jax.random.rademacher(k_a, (k, m), dtype)
    return P, SoftmaxSignFrozen(a=a, scale=output_scale(m, parametrization, ntk_power=0.5, dtype=dtype))


def forward(P: Float[Array, "m d"], frozen: SoftmaxSignFrozen, u: Float[Array, " d"]) -> Float[Array, " k"]:
    """``F(P; x) = scale a softmax(P u)`` for one input ``u`` (d,); returns shape (k,)."""
    S = jax.nn.softmax(P @ u)
    return frozen.scale * (frozen.a @ S)


def softmax_weights_stats(P: Float[Array, "m d"], a_rows: Float[Array, "m k"], U: Float[Array, "n d"], red: Reducers
                          ) -> tuple[Float[Array, " n"], Float[Array, " n"], Float[Array, "n k"]]:
    """Per-input softmax statistics of the prefix, streamed over rows by ``red``.

    Args:
        P: prefix (m, d); a_rows: the signs with rows first, (m, k); U: inputs (n, d).
        red: the row reductions.

    Returns:
        ``(mx, s, abar)``: max logit (n,), normaliser (n,) and the softmax average of ``a_rows`` (n, k).
    """
    mx, s, w = red.online_softmax(lambda P_c, a_c: P_c @ U.T, lambda P_c, a_c: a_c, (P, a_rows))
    return mx, s, w / s[:, None]


def ntk_rule(P: Float[Array, "m d"], frozen: SoftmaxSignFrozen, U1: Float[Array, "n1 d"],
             U2: Float[Array, "n2 d"] | None, red: Reducers) -> Float[Array, "n1 n2 k k"]:
    """The structured NTK with the row reductions done by ``red``.

    Args:
        P: prefix (m, d); frozen: from :func:`init`.
        U1, U2: inputs (n1, d) and (n2, d); ``U2=None`` means ``U2 = U1`` (one softmax pass).
        red: the row reductions (:func:`theory.streaming.local_reducers` or sharded ones).

    Returns:
        ``H`` of shape (n1, n2, k, k).
        Unvalidated: :func:`theory.structured_ntk` checks the inputs.
    """
    a_rows = frozen.a.T  # (m, k)
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
    return frozen.scale ** 2 * G * (U1 @ U2.T)[:, :, None, None]


def outputs_rule(P: Float[Array, "m d"], frozen: SoftmaxSignFrozen, U: Float[Array, "n d"],
                 red: Reducers) -> Float[Array, "n k"]:
    """Outputs for a batch ``U`` (n, d), streamed over rows by ``red``; returns shape (n, k)."""
    return frozen.scale * softmax_weights_stats(P, frozen.a.T, U, red)[2]


#: :func:`ntk_rule` streamed over row chunks on one device, jitted (``chunk_size`` static).
structured_ntk = single_device_ntk(ntk_rule)


def limit_kernel(U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"], *, sigma: ScalarLike,
                 frozen: SoftmaxSignFrozen) -> Float[Array, "n1 n2 k k"]:
    """H* of softmax-sign: ``delta_{ll'} <u_i, u_j> exp(sigma^2 <u_i, u_j>)``.

    Args:
        U1, U2: inputs (n1, d) and (n2, d).
        sigma: prefix initialisation scale; frozen: reads ``a`` (only its row count k).

    Returns:
        ``H*`` of shape (n1, n2, k, k).
    """
    k = frozen.a.shape[0]
    c = U1 @ U2.T
    return (c * jnp.exp(sigma**2 * c))[:, :, None, None] * jnp.eye(k, dtype=c.dtype)


MODEL = register(
    StylizedModel(
        name="softmax-sign",
        description="softmax attention over the prefix, frozen sign values, k outputs",
        frozen_type=SoftmaxSignFrozen,
        init=init,
        forward=forward,
        structured_ntk=structured_ntk,
        ntk_rule=ntk_rule,
        outputs_rule=outputs_rule,
        limit_kernel=limit_kernel,
        limit_reads=("a",),
        row_axes={"a": 1},
        operand_width=lambda k: k,
        chunk_numbers=lambda k: 4 + 2 * k,
        frozen_per_row=lambda k, d: k,
        gram_width=lambda k: k,
        flops_per_row=lambda n, d, k: 4 * n * d + 5 * n + 4 * n * k + 2 * (n * k) ** 2,
        spec="spec section 2.B",
    )
)
