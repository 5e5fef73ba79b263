"""Model ``prefix``: tied prefix attention, the prefix rows are keys and values (spec 2.C).

This is prefix learning itself (``K_P = P W_K``, ``V_P = P W_V``) with ``V := W_V^T`` (k x d)::

    F(P; x)   = sqrt(m) ( sum_r S_r(x) V p_r  -  sum_r S_r^0(x) V p_r^0 )     (centred at P^0)
    dF/dp_r   = sqrt(m) S_r [ V + (V p_r - Fbar) u^T ],     Fbar(x) = sum_s S_s V p_s
    H*_ij     = exp(sigma^2 c) V [ (1 + sigma^2 c) I_d + sigma^2 (2 + sigma^2 c) u_j u_i^T ] V^T,
                c = <u_i, u_j>     (a k x k block; H*[(i,l),(j,l')] = (H*_ij)_{l l'})

Gradient: the direct term is S_r V; through the softmax, dS_s/dp_r = S_s (delta_sr - S_r) u^T,
so sum_s V p_s dS_s/dp_r = S_r (V p_r - Fbar) u^T.

Derivation of H* (ours; it agrees with the spec): as m -> oo, S_r(x) ~ exp(<p_r,u>) /
(m Z(u)) with Z(u) = exp(sigma^2||u||^2/2), and Fbar(x) -> E[exp(<p,u>) V p] / Z(u) = sigma^2 V u.
With J_ri = S_ri (V + w_ri u_i^T), w_ri = V(p_r - sigma^2 u_i),

    H_ij = m sum_r J_ri J_rj^T -> V E[e^{<p,s>} (I + (p - sigma^2 u_i) u_i^T)(I + u_j (p - sigma^2 u_j)^T)] V^T / (Z_i Z_j)

with s = u_i + u_j.  Tilting N(0, sigma^2 I) by e^{<p,s>} gives mass e^{sigma^2||s||^2/2} and
the law N(sigma^2 s, sigma^2 I); the mass over Z_i Z_j is e^{sigma^2 c}.  Under the tilted law
a = p - sigma^2 u_i has mean sigma^2 u_j, b = p - sigma^2 u_j has mean sigma^2 u_i, and
E[a b^T] = sigma^4 u_j u_i^T + sigma^2 I, so the expectation is
I + 2 sigma^2 u_j u_i^T + c (sigma^4 u_j u_i^T + sigma^2 I), which is the bracket above.  The
ordering u_j u_i^T (not u_i u_j^T) matters when k >= 2; the tests use the swapped ordering as
a negative control.  Centring subtracts a constant in P and leaves the kernel unchanged.

Structured NTK: with w_ril = (V p_r)_l - Fbar_l(x_i) and T_r(i,l) = S_ri w_ril,

    H[i,j,l,l'] = scale^2 [ (V V^T)_{ll'} M0_ij + (V u_j)_l W1_{ij l'} + (V u_i)_{l'} W1'_{ij l}
                            + <u_i,u_j> W2_{ij l l'} ]
    M0 = sum_r S_ri S_rj,  W1 = sum_r S_ri T_r(j,l'),  W1' = sum_r T_r(i,l) S_rj,  W2 = sum_r T_r(i,l) T_r(j,l')

streamed over row chunks after one pass for the softmax statistics and Fbar: O(n^2 k^2 m)
operations against O(n^2 k^2 m d) for the Jacobian contraction.  Each chunk does the four sums
as GEMMs of the operands S (c, n) and T (c, nk); for U2 = U1 it skips W1', the transpose of W1
(3/4 of the work of one GEMM over the concatenation [S, T], and no concatenated copy).

Sizes (read by the memory plan and the benchmarks from :data:`MODEL`): the Gram operands S and
T have 1 + k columns per input (the largest per-chunk GEMM, T^T T, has k); a chunk holds about
4 + 3k numbers per (row, input) (logits, S, P V^T and T); the frozen initial prefix P0 is d
numbers per row; per row the kernel costs logits 4nd, values P V^T 4dk, the softmax 5n,
averages and operand 5nk, and the three Gram blocks 2(n^2 + n nk + (nk)^2) flops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from theory.contracts import FrozenArrays, frozen_record
from theory.kernels.models import StylizedModel, output_scale, register, single_device_ntk
from theory.streaming import Reducers

__all__ = ["MODEL", "PrefixFrozen", "readout"]


@frozen_record
class PrefixFrozen(FrozenArrays):
    """The frozen arrays of ``prefix``: the readout ``V = W_V^T``, the initial prefix and the output scale."""

    V: Float[Array, "k d"]  # readout, m-independent (H* depends on it)
    P0: Float[Array, "m d"]  # the prefix at initialisation (the output is centred there)
    scale: Float[Array, ""]  # m^{1/2} (NTK) or 1 (mean-field)


def readout(*, key: PRNGKeyArray, d: int, k: int, dtype=jnp.float64) -> Float[Array, "{k} {d}"]:
    """Frozen readout ``V = W_V^T`` with i.i.d. N(0, 1/d) entries.

    Args:
        key: a JAX PRNG key; d, k: feature and output dimensions; dtype: float dtype.

    Returns:
        ``V`` of shape (k, d).
    """
    return jax.random.normal(key, (k, d), dtype) / jnp.sqrt(jnp.asarray(d, dtype))


def init(*, key: PRNGKeyArray, m: int, d: int, k: int = 1, sigma: ScalarLike = 1.0, dtype=jnp.float64,
         parametrization: str = "ntk") -> tuple[Float[Array, "{m} {d}"], PrefixFrozen]:
    """Draw P (m, d) with rows i.i.d. N(0, sigma^2 I_d) and
    ``frozen = PrefixFrozen(V=readout (k, d), P0=P, scale=m^1/2)``.

    The arguments are those of :func:`theory.init_model`, which validates them and calls this.
    """
    k_P, k_V = jax.random.split(key)
    P = sigma * jax.random.normal(k_P, (m, d), dtype)
    frozen = PrefixFrozen(
        V=readout(key=k_V, d=d, k=k, dtype=dtype),
        P0=P,
        scale=output_scale(m, parametrization, ntk_power=0.5, dtype=dtype),
    )
    return P, frozen


def _attend(P, V, u):
    S = jax.nn.softmax(P @ u)
    return V @ (P.T @ S)


def forward(P: Float[Array, "m d"], frozen: PrefixFrozen, u: Float[Array, " d"]) -> Float[Array, " k"]:
    """Centred output ``F(P; x)`` (module docstring) for one input ``u`` (d,); returns shape (k,)."""
    return frozen.scale * (_attend(P, frozen.V, u) - _attend(frozen.P0, frozen.V, u))


def _stats(P, V, U, red: Reducers):
    mx, s, w = red.online_softmax(lambda P_c: P_c @ U.T, lambda P_c: P_c @ V.T, (P,))
    return mx, s, w / s[:, None]  # Fbar: (n, k)


def ntk_rule(P: Float[Array, "m d"], frozen: PrefixFrozen, U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"] | None,
             red: Reducers) -> Float[Array, "n1 n2 k k"]:
    """The structured NTK with the row reductions done by ``red`` (the sums M0, W1, W1', W2 above).

    Args:
        P: prefix (m, d); frozen: from :func:`init` (``V`` (k, d) is the readout).
        U1, U2: inputs (n1, d) and (n2, d); ``U2=None`` means ``U2 = U1`` (one softmax pass).
        red: the row reductions (:func:`theory.streaming.local_reducers` or sharded ones).

    Returns:
        ``H`` of shape (n1, n2, k, k).
        Unvalidated: :func:`theory.structured_ntk` checks the inputs.
    """
    V = frozen.V
    same = U2 is None
    U2 = U1 if same else U2
    n1, n2, k = U1.shape[0], U2.shape[0], V.shape[0]
    st1 = _stats(P, V, U1, red)
    st2 = st1 if same else _stats(P, V, U2, red)

    def operands(P_c, U, stats):  # held as (width, c): each Gram contracts the minor axis
        mx, s, Fbar = stats
        S = jnp.exp(U @ P_c.T - (mx + jnp.log(s))[:, None])  # (n, c): the softmax, 1/s in the shift
        T = S[:, None, :] * ((V @ P_c.T)[None, :, :] - Fbar[:, :, None])  # (n, k, c)
        return S, T.reshape(-1, T.shape[-1])

    def chunk(P_c):
        S1, T1 = operands(P_c, U1, st1)
        if same:  # sum_r T_r(i,l) S_rj is the transpose of W1: three GEMMs instead of four
            return S1 @ S1.T, S1 @ T1.T, T1 @ T1.T
        S2, T2 = operands(P_c, U2, st2)
        return S1 @ S2.T, S1 @ T2.T, T1 @ S2.T, T1 @ T2.T

    sums = red.row_sum(chunk, (P,))
    M0, W1 = sums[0], sums[1].reshape(n1, n2, k)  # sum_r S_ri T_r(j, l')
    W1p = (sums[1].T if same else sums[2]).reshape(n1, k, n2).transpose(0, 2, 1)  # sum_r T_r(i, l) S_rj
    W2 = sums[-1].reshape(n1, k, n2, k).transpose(0, 2, 1, 3)  # sum_r T_r(i, l) T_r(j, l')
    VU1, VU2 = U1 @ V.T, U2 @ V.T  # (n, k): (V u_i)_l
    H = (
        (V @ V.T)[None, None] * M0[:, :, None, None]
        + VU2[None, :, :, None] * W1[:, :, None, :]
        + VU1[:, None, None, :] * W1p[:, :, :, None]
        + (U1 @ U2.T)[:, :, None, None] * W2
    )
    return frozen.scale ** 2 * H


def outputs_rule(P: Float[Array, "m d"], frozen: PrefixFrozen, U: Float[Array, "n d"],
                 red: Reducers) -> Float[Array, "n k"]:
    """Centred outputs for a batch ``U`` (n, d), streamed over rows by ``red``; returns shape (n, k)."""
    V = frozen.V
    return frozen.scale * (_stats(P, V, U, red)[2] - _stats(frozen.P0, V, U, red)[2])


#: :func:`ntk_rule` streamed over row chunks on one device, jitted (``chunk_size`` static).
structured_ntk = single_device_ntk(ntk_rule)


def limit_kernel(U1: Float[Array, "n1 d"], U2: Float[Array, "n2 d"], *, sigma: ScalarLike,
                 frozen: PrefixFrozen) -> Float[Array, "n1 n2 k k"]:
    """H* of the prefix model (module docstring).

    Args:
        U1, U2: inputs (n1, d) and (n2, d).
        sigma: prefix initialisation scale; frozen: reads ``V``, the (k, d) readout.

    Returns:
        ``H*`` of shape (n1, n2, k, k).
    """
    V = frozen.V
    s2 = sigma**2
    c = U1 @ U2.T  # (n1, n2)
    VU1, VU2 = U1 @ V.T, U2 @ V.T  # (n, k)
    iso = (1 + s2 * c)[:, :, None, None] * (V @ V.T)[None, None]
    # (V u_j u_i^T V^T)_{l l'} = (V u_j)_l (V u_i)_{l'}
    outer = (s2 * (2 + s2 * c))[:, :, None, None] * VU2[None, :, :, None] * VU1[:, None, None, :]
    return jnp.exp(s2 * c)[:, :, None, None] * (iso + outer)


MODEL = register(
    StylizedModel(
        name="prefix",
        description="tied prefix attention (rows are keys and values), centred, k outputs",
        frozen_type=PrefixFrozen,
        init=init,
        forward=forward,
        structured_ntk=structured_ntk,
        ntk_rule=ntk_rule,
        outputs_rule=outputs_rule,
        limit_kernel=limit_kernel,
        limit_reads=("V",),
        row_axes={"P0": 0},
        operand_width=lambda k: 1 + k,
        chunk_numbers=lambda k: 4 + 3 * k,
        frozen_per_row=lambda k, d: d,
        gram_width=lambda k: k,
        flops_per_row=lambda n, d, k: (4 * n * d + 4 * d * k + 5 * n + 5 * n * k
                                       + 2 * (n * n + n * n * k + (n * k) ** 2)),
        spec="spec section 2.C",
    )
)
