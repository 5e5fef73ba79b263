"""The typed model contract (theory.contracts): every model's functions and frozen record follow
it, the shapes in the signatures are checked under the test suite's beartype hook (with negative
controls: a wrong shape is refused), and the records behave as pytrees."""

import dataclasses

import jax
import jax.numpy as jnp
import jaxtyping
import pytest

import theory as T
from theory import contracts as C
from theory.kernels import exp_sign, prefix, softmax_sign
from theory.streaming import local_reducers
from theory.transformer import adapters as AD
from theory.transformer import model as M
from theory.transformer import trainable as TH

MODELS = [("exp-sign", 1), ("softmax-sign", 2), ("prefix", 2)]


@pytest.mark.parametrize("name, k", MODELS)
def test_every_model_follows_the_contract(name, k):
    model = T.get_model(name)
    for field, protocol in (("init", C.Init), ("forward", C.Forward), ("ntk_rule", C.NtkRule),
                            ("structured_ntk", C.StructuredNtk), ("outputs_rule", C.OutputsRule),
                            ("limit_kernel", C.LimitKernel)):
        assert isinstance(getattr(model, field), protocol), (name, field)
    P, frozen = T.init_model(name, key=jax.random.key(0), m=5, d=3, k=k)
    assert type(frozen) is model.frozen_type and isinstance(frozen, C.FrozenArrays)
    assert set(model.row_axes) | set(model.limit_reads) <= set(frozen.field_names())
    U = jnp.ones((4, 3)) / 4
    assert model.forward(P, frozen, U[0]).shape == (k,)
    assert model.ntk_rule(P, frozen, U, U[:2], local_reducers(2)).shape == (4, 2, k, k)
    assert model.outputs_rule(P, frozen, U, local_reducers(2)).shape == (4, k)
    assert model.limit_kernel(U, U[:2], sigma=0.5, frozen=frozen).shape == (4, 2, k, k)


def test_records_are_pytrees_that_unflatten_without_checks():
    _, frozen = T.init_model("prefix", key=jax.random.key(0), m=5, d=3, k=2)
    leaves, tree = jax.tree_util.tree_flatten(frozen)
    assert [a.shape for a in leaves] == [(2, 3), (5, 3), ()]  # V, P0, scale
    shapes = jax.tree_util.tree_map(lambda a: a.shape, frozen)  # non-array leaves: no __init__ check
    assert shapes.P0 == (5, 3)
    doubled = jax.jit(lambda f: jax.tree_util.tree_map(lambda a: 2 * a, f))(frozen)
    assert type(doubled) is prefix.PrefixFrozen and jnp.array_equal(doubled.V, 2 * frozen.V)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.V = frozen.P0
    with pytest.raises(T.InputError, match="no field"):
        frozen.replace(W=frozen.V)


# ----------------------------------------------------------------------------- shapes under the hook


def _prefix_problem():
    P, frozen = T.init_model("prefix", key=jax.random.key(1), m=6, d=3, k=2)
    return P, frozen, jnp.ones((4, 3)) / 4


def test_right_shapes_pass_the_checks():
    P, frozen, U = _prefix_problem()
    assert prefix.forward(P, frozen, U[0]).shape == (2,)
    assert prefix.limit_kernel(U, U, sigma=0.5, frozen=frozen).shape == (4, 4, 2, 2)


@pytest.mark.parametrize("call", [
    lambda P, fr, U: prefix.forward(P, fr, U[0, :2]),  # u has 2 features, P has 3
    lambda P, fr, U: prefix.forward(P, fr, U),  # a batch where one input is expected
    lambda P, fr, U: prefix.ntk_rule(P, fr, U, U[:, :2], local_reducers(2)),  # U2 of the wrong width
    lambda P, fr, U: prefix.limit_kernel(U, U, sigma=0.5, frozen=exp_sign.init(key=jax.random.key(0), m=6, d=3)[1]),
    lambda P, fr, U: softmax_sign.outputs_rule(P[None], softmax_sign.init(key=jax.random.key(0), m=6, d=3)[1], U,
                                               local_reducers(2)),  # P of rank 3
    lambda P, fr, U: prefix.PrefixFrozen(V=fr.V, P0=jnp.ones((6, 4)), scale=fr.scale),  # d differs inside a record
    lambda P, fr, U: fr.replace(scale=jnp.ones(2)),  # a vector where a scalar belongs
])
def test_wrong_shapes_are_refused_under_the_hook(call):
    """Negative controls of the hook (tests/conftest.py): each call is wrong in one shape or type."""
    P, frozen, U = _prefix_problem()
    with pytest.raises(jaxtyping.TypeCheckError):
        call(P, frozen, U)


def test_transformer_shapes_under_the_hook():
    cfg = M.TransformerConfig(vocab=5, k=3, T=4, d=8, layers=1, heads=2, d_mlp=8)
    params = M.init_params(cfg, key=jax.random.key(0))
    assert isinstance(params, C.FrozenArrays) and isinstance(params.layers[0], M.LayerWeights)
    theta = M.init_prefix(cfg, 3, key=jax.random.key(1))
    tokens = jnp.arange(4) % cfg.vocab
    assert M.forward(cfg, params, theta, tokens).shape == (3,)
    with pytest.raises(jaxtyping.TypeCheckError):  # negative control: tokens of a batch, not one sequence
        M.forward(cfg, params, theta, tokens[None])
    with pytest.raises(jaxtyping.TypeCheckError):  # negative control: a layer whose heads disagree
        params.layers[0].replace(W_K=params.layers[0].W_K[:1])


def _transformer_problem(**cfg):
    cfg = M.TransformerConfig(vocab=5, k=3, T=4, d=8, layers=2, heads=2, d_mlp=8, d_reparam=4, **cfg)
    return cfg, M.init_params(cfg, key=jax.random.key(0)), jnp.arange(4) % cfg.vocab


@pytest.mark.parametrize("make", [
    lambda cfg, params: M.init_prefix(cfg, 3, key=jax.random.key(1)),
    lambda cfg, params: M.init_prefix(dataclasses.replace(cfg, form="reparam"), 3, key=jax.random.key(1)),
    lambda cfg, params: AD.init_lora(cfg, 2, key=jax.random.key(1)),
    lambda cfg, params: AD.init_ntk_attention(cfg, params, M.init_prefix(cfg, 3, key=jax.random.key(1))),
])
def test_trainable_records_are_typed_pytrees(make):
    """Each adapter's theta is its record, flattens in the order of the former dict's sorted keys
    (which fixes every sum over leaves), and passes through an optax step as a record."""
    import optax

    cfg, params, _ = _transformer_problem()
    theta = make(cfg, params)
    assert isinstance(theta, C.TrainableArrays) and isinstance(theta, AD.THETA_TYPES[
        {TH.LoraTheta: "lora", TH.NtkAttentionTheta: "ntk-attention"}.get(type(theta), "prefix")])
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(theta)[0]]
    assert paths == ["." + n for n in sorted(theta.field_names()) if getattr(theta, n) is not None]
    opt = optax.adam(1e-3)
    upd, _ = opt.update(jax.tree_util.tree_map(jnp.ones_like, theta), opt.init(theta), theta)
    moved = optax.apply_updates(theta, upd)
    assert type(moved) is type(theta) and M.n_params(moved) == M.n_params(theta)


def test_wrong_shape_theta_is_refused_under_the_hook():
    """Negative controls: a theta record whose fields disagree in a shape is refused when built,
    and a function typed by the prefix records refuses another adapter's record; the right shapes
    pass (the positive control)."""
    cfg, params, tokens = _transformer_problem()
    theta = M.init_prefix(cfg, 3, key=jax.random.key(1))
    assert M.forward(cfg, params, TH.PrefixTheta(K=theta.K, V=theta.V), tokens).shape == (3,)
    with pytest.raises(jaxtyping.TypeCheckError):  # V with 4 rows where K has 3
        TH.PrefixTheta(K=theta.K, V=jnp.ones((2, 4, 8)))
    with pytest.raises(jaxtyping.TypeCheckError):  # K of rank 2
        theta.replace(K=theta.K[0])
    rp = M.init_prefix(dataclasses.replace(cfg, form="reparam"), 3, key=jax.random.key(1))
    assert isinstance(rp.replace(E=2 * rp.E), TH.ReparamTheta)
    with pytest.raises(jaxtyping.TypeCheckError):  # E of hidden width 5 where A is 4 x 4
        rp.replace(E=jnp.ones((3, 5)))
    lora = AD.init_lora(cfg, 2, key=jax.random.key(1))
    with pytest.raises(jaxtyping.TypeCheckError):  # B of rank 3 where A has rank 2
        lora.replace(B=jnp.zeros((2, 2, 3, 8)))
    with pytest.raises(jaxtyping.TypeCheckError):  # a LoRA record where a prefix belongs
        M.forward(cfg, params, lora, tokens)


def test_adapter_refuses_another_adapters_theta():
    cfg, params, tokens = _transformer_problem()
    lora = AD.init_lora(cfg, 2, key=jax.random.key(1))
    assert AD.adapted_forward(cfg, "lora", params, lora, tokens).shape == (3,)
    with pytest.raises(T.InputError, match="ntk-attention.*NtkAttentionTheta.*LoraTheta"):
        AD.adapted_forward(cfg, "ntk-attention", params, lora, tokens)
    rp = M.init_prefix(dataclasses.replace(cfg, form="reparam"), 3, key=jax.random.key(1))
    with pytest.raises(T.InputError, match="PrefixTheta, got ReparamTheta"):
        M.prefixes(cfg, rp)
    with pytest.raises(T.InputError, match="untied"):
        M.prefixes(cfg, TH.PrefixTheta(K=rp.B[:, 0, :3]))


def test_public_functions_still_raise_input_error():
    """The hook does not replace the eager checks: a public function refuses another model's record
    and a wrong rank with an InputError (as it does without the hook)."""
    P, frozen, U = _prefix_problem()
    with pytest.raises(T.InputError, match="PrefixFrozen"):
        T.structured_ntk("exp-sign", P, frozen, U)
    with pytest.raises(T.InputError, match="PrefixFrozen"):
        T.limit_kernel("softmax-sign", U, sigma=0.5, frozen=frozen)
    with pytest.raises(T.InputError, match="U1"):
        T.structured_ntk("prefix", P, frozen, U[0])
    with pytest.raises(T.InputError, match="no field"):
        T.monte_carlo_kernel("prefix", U, key=jax.random.key(0), m=4, sigma=0.5, k=2, fixed={"W": frozen.V})
