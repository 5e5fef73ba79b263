"""prefix-ntk theory: pure JAX functions for prefix attention, its stylized NTK models,
their empirical and limiting kernels, and the bounds the papers prove.

Nothing here does I/O, prints, or changes global JAX configuration.  See README "Public API".
"""

import jax.numpy as _jnp

# The models register themselves on import, in this order (the order of model_names()): spec 2.A-2.C.
from theory.kernels import exp_sign as _model_exp_sign  # noqa: F401  (registers "exp-sign")
from theory.kernels import softmax_sign as _model_softmax_sign  # noqa: F401  (registers "softmax-sign")
from theory.kernels import prefix as _model_prefix  # noqa: F401  (registers "prefix")
from theory.kernels.linearized import default_learning_rate, kernel_regression_residuals, loss_bound
from theory.moe.model import moe_from_attention, moe_regression
from theory.moe.fit import fit_least_squares
from theory.moe.voronoi import voronoi_loss
from theory.kernels.models import StylizedModel, get_model, init_model, model_names, register, sphere_inputs
from theory.kernels.ntk_empirical import (
    LambdaMin,
    autodiff_model_ntk,
    autodiff_ntk,
    empirical_ntk,
    kernel_matrix,
    lambda_min,
    model_outputs,
    structured_ntk,
)
from theory.kernels.ntk_limit import (MonteCarloKernel, chebyshev_width, exp_sign_fluctuation, limit_kernel,
                                      max_movement_slope, monte_carlo_kernel)
from theory.ntk_attn.feature_maps import feature_map, taylor_features
from theory.ntk_attn.ntk_attention import ntk_attention, ntk_attention_batch, prefix_summary
from theory.ntk_attn.bounds import degree_needed, output_error_bound, weight_error
from theory.ntk_attn.rounding import ntk_attention_certified, prefix_summary_majorant
from theory.ntk_attn.train import train_summary
from theory.prefix_attention import attention_logits, prefix_attention, prefix_attention_batch
from theory.validation import InputError, LogitOverflowError, PrecisionLossError, PrecisionLossWarning
from theory.validation import check_projections as _check_projections
from theory.validation import validate_args as _validate_args


@_validate_args(X=2, W_Q=2, W_K=2)
def fold_inputs(X, W_Q, W_K):
    """``U = X W_Q W_K^T / sqrt(d_k)``: rows ``u = W x`` with ``<p_r, u> = <q, k_r>/sqrt(d_k)`` (spec 2).

    Args:
        X: inputs, (n, d); W_Q, W_K: projections, (d, d_k).

    Returns:
        ``U``, (n, d).

    Raises:
        InputError: an argument is not a numeric 2-D array, or a projection has not d rows
            (``W_K`` must be shaped like ``W_Q``).
    """
    X, W_Q, W_K = (_jnp.asarray(a) for a in (X, W_Q, W_K))
    _check_projections(X.shape[1], W_Q=W_Q, W_K=W_K)
    return (X @ W_Q) @ W_K.T / _jnp.sqrt(_jnp.asarray(W_Q.shape[1], X.dtype))


__all__ = [
    "InputError",
    "LambdaMin",
    "LogitOverflowError",
    "MonteCarloKernel",
    "PrecisionLossError",
    "PrecisionLossWarning",
    "StylizedModel",
    "attention_logits",
    "autodiff_model_ntk",
    "autodiff_ntk",
    "chebyshev_width",
    "max_movement_slope",
    "default_learning_rate",
    "degree_needed",
    "empirical_ntk",
    "exp_sign_fluctuation",
    "fit_least_squares",
    "feature_map",
    "fold_inputs",
    "get_model",
    "init_model",
    "kernel_matrix",
    "kernel_regression_residuals",
    "lambda_min",
    "limit_kernel",
    "loss_bound",
    "model_names",
    "model_outputs",
    "moe_from_attention",
    "moe_regression",
    "monte_carlo_kernel",
    "ntk_attention",
    "ntk_attention_batch",
    "ntk_attention_certified",
    "output_error_bound",
    "prefix_attention",
    "prefix_attention_batch",
    "prefix_summary",
    "prefix_summary_majorant",
    "register",
    "sphere_inputs",
    "structured_ntk",
    "taylor_features",
    "train_summary",
    "voronoi_loss",
    "weight_error",
]
