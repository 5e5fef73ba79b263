"""Model ``exp-sign``: unnormalised exponential attention with frozen sign values (spec 2.A).

    f(P; x) = m^{-1/2} sum_r a_r exp(<p_r, u>),          a_r ~ Unif{+-1} frozen, u = W x
    df/dp_r = m^{-1/2} a_r exp(<p_r, u>) u
    H_ij    = (1/m) sum_r a_r^2 exp(<p_r, u_i + u_j>) <u_i, u_j>
    H*_ij   = <u_i, u_j> exp(sigma^2 ||u_i + u_j||^2 / 2)

Derivation of H*: for p ~ N(0, sigma^2 I), E exp(<p, s>) = exp(sigma^2 ||s||^2 / 2) (Gaussian
moment generating function) with s = u_i + u_j, and a_r^2 = 1.  Each entry of H is a mean of m
i.i.d. terms, so E H(0) = H* exactly at every m and (see :func:`exp_sign_fluctuation`)

    E ||H(0) - H*||_F^2 = (1/m) sum_ij <u_i,u_j>^2 (exp(2 sigma^2 ||s_ij||^2) - exp(sigma^2 ||s_ij||^2)).

Structured NTK: with E_ir = a_r exp(<p_r, u_i>), H = scale^2 (E1 E2^T) * (U1 U2^T), a matmul
over row chunks: O(n^2 m) operations, memory independent of m.  Each chunk holds its operand as
(n, c), so the Gram contracts the minor axis of both factors: about twice the rate of the
(c, n)^T (c, n) form on the CPU measured (docs/scaling.md).

Sizes (read by the memory plan and the benchmarks from :data:`MODEL`): the Gram operand E has
one column per input; a chunk holds about two numbers per (row, input) (logits and E); the
frozen signs are one number per row; per row the kernel costs the logits 2nd, exp and sign 2n
and the Gram 2n^2 flops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from theory import validation as _v
from theory.contracts import FrozenArrays, frozen_record
from theory.kernels.models import StylizedModel, output_scale, register, single_device_ntk
from theory.streaming import Reducers

__all__ = ["MODEL", "ExpSignFrozen", "exp_sign_fluctuation"]


@frozen_record
class ExpSignFrozen(FrozenArrays):
    """The frozen arrays of ``exp-sign``: one sign per prefix row and the output scale."""

    a: Float[Array, " m"]  # a_r ~ Unif{+-1}
    scale: Float[Array, ""]  # m^{-1/2} (NTK) or 1/m (mean-field)


def init(*, key: PRNGKeyArray, m: int, d: int, k: int = 1, sigma: ScalarLike = 1.0, dtype=jnp.float64,
         parametrization: str = "ntk") -> tuple[Float[Array, "{m} {d}"], ExpSignFrozen]:
    """Draw P (m, d) with rows i.i.d. N(0, sigma^2 I_d) and
    ``frozen = ExpSignFrozen(a=signs (m,), scale=m^-1/2)``; raises ValueError unless k = 1.

    The arguments are those of :func:`theory.init_model`, which validates them and calls this.
    """
    if k != 1:
        raise ValueError(f"k must be 1 for exp-sign (scalar output), got {k}")
    k_P, k_a = jax.random.split(key)
    P = sigma * jax.random.normal(k_P, (m, d), dtype)
    a = jax.random.rademacher(k_a, (m,), dtype)
    return P, ExpSignFrozen(a=a, scale=output_scale(m, parametrization, ntk_power=-0.5, dtype=dtype))


def forward(P: Float[Array, "m d"], frozen: ExpSignFrozen, u: Float[Array, " d"]) -> Float[Array, " 1"]:
    """``f(P; x) = scale sum_r a_r exp(<p_r, u>)`` for one input ``u`` (d,); returns shape (1,)."""
    return frozen.scale * jnp.sum(frozen.a * jnp.exp(P @ u))[None]


def ntk_rule(P: Float[Array, "m d"], frozen: ExpSignFrozen, U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"] | None,
             red: Reducers) -> Float[Array, "n1 n2 1 1"]:
    """The structured NTK with the row sums done by ``red``.

    Args:
        P: prefix (m, d); frozen: from :func:`init`.
        U1, U2: inputs (n1, d) and (n2, d); ``U2=None`` means ``U2 = U1`` (one operand).
        red: the row reductions (:func:`theory.streaming.local_reducers` or sharded ones).

    Returns:
        ``H`` of shape (n1, n2, 1, 1).
        Unvalidated: :func:`theory.structured_ntk` checks the inputs.
    """
    same = U2 is None
    U2 = U1 if same else U2

    def chunk(P_c, a_c):  # operands held as (n, c): a Gram over the minor axis is the faster GEMM
        E1 = a_c * jnp.exp(U1 @ P_c.T)
        return E1 @ (E1 if same else a_c * jnp.exp(U2 @ P_c.T)).T

    G = red.row_sum(chunk, (P, frozen.a))
    H = frozen.scale ** 2 * G * (U1 @ U2.T)
    return H[:, :, None, None]


def outputs_rule(P: Float[Array, "m d"], frozen: ExpSignFrozen, U: Float[Array, "n d"],
                 red: Reducers) -> Float[Array, "n 1"]:
    """Outputs for a batch ``U`` (n, d), streamed over rows by ``red``; returns shape (n, 1)."""
    s = red.row_sum(lambda P_c, a_c: jnp.exp(P_c @ U.T).T @ a_c, (P, frozen.a))
    return frozen.scale * s[:, None]


#: :func:`ntk_rule` streamed over row chunks on one device, jitted (``chunk_size`` static).
structured_ntk = single_device_ntk(ntk_rule)


def limit_kernel(U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"], *, sigma: ScalarLike,
                 frozen: ExpSignFrozen | None = None) -> Float[Array, "n1 n2 1 1"]:
    """H* of exp-sign: ``<u_i, u_j> exp(sigma^2 ||u_i + u_j||^2 / 2)``.

    Args:
        U1, U2: inputs (n1, d) and (n2, d).
        sigma: prefix initialisation scale; frozen: unused (H* depends on nothing frozen).

    Returns:
        ``H*`` of shape (n1, n2, 1, 1).
    """
    c = U1 @ U2.T
    sq = jnp.sum(U1**2, 1)[:, None] + jnp.sum(U2**2, 1)[None, :] + 2 * c
    return (c * jnp.exp(sigma**2 * sq / 2))[:, :, None, None]


def _fluctuation(U: Float[Array, "n d"], sigma: ScalarLike) -> Float[Array, ""]:
    """The sum of variances of :func:`exp_sign_fluctuation`, unvalidated."""
    c = U @ U.T
    sq = jnp.sum(U**2, 1)[:, None] + jnp.sum(U**2, 1)[None, :] + 2 * c
    return jnp.sum(c**2 * (jnp.exp(2 * sigma**2 * sq) - jnp.exp(sigma**2 * sq)))


@_v.validate_args(U=2)
def exp_sign_fluctuation(U, *, sigma):  # public: validated here (InputError), so no type hints to check
    """``C = m E ||H(0) - H*||_F^2`` for ``exp-sign`` (exact, every m).

    Each entry H_ij is the mean of m i.i.d. terms ``c_ij exp(<p_r, s_ij>)`` (``c_ij = <u_i,u_j>``,
    ``s_ij = u_i + u_j``) with variance ``c_ij^2 (E e^{2<p,s>} - (E e^{<p,s>})^2)
    = c_ij^2 (exp(2 sigma^2 ||s||^2) - exp(sigma^2 ||s||^2))``; summing the variances gives C.
    So ``sqrt(m) ||H(0) - H*||_F`` has second moment C at every m.

    Args:
        U: inputs of shape (n, d).
        sigma: prefix initialisation scale, > 0.

    Returns:
        The scalar C.

    Raises:
        InputError: U is not a finite matrix, sigma <= 0, or ``exp(2 sigma^2 ||u_i + u_j||^2)``
            overflows the dtype of U.
    """
    sigma = _v.check_positive("sigma", sigma)
    U = jnp.asarray(U)
    _v.check_matrix("U", U)
    _v.check_finite("U", U)
    sq = jnp.sum(U**2, 1)[:, None] + jnp.sum(U**2, 1)[None, :] + 2 * (U @ U.T)
    _v.check_logits_fit("sigma and U", float(jnp.max(2 * sigma**2 * sq)), U.dtype)
    return _fluctuation(U, sigma)


MODEL = register(
    StylizedModel(
        name="exp-sign",
        description="unnormalised exponential attention, frozen sign values, scalar output",
        frozen_type=ExpSignFrozen,
        init=init,
        forward=forward,
        structured_ntk=structured_ntk,
        ntk_rule=ntk_rule,
        outputs_rule=outputs_rule,
        limit_kernel=limit_kernel,
        fixed_k=1,
        logit_multiple=2.0,
        row_axes={"a": 0},
        operand_width=lambda k: 1,
        chunk_numbers=lambda k: 2,
        frozen_per_row=lambda k, d: 1,
        gram_width=lambda k: 1,
        flops_per_row=lambda n, d, k: 2 * n * d + 2 * n + 2 * n * n,
        fluctuation=exp_sign_fluctuation,
        spec="spec section 2.A",
    )
)
