"""The small transformer with a trainable prefix (theory/transformer): exactness of its prefix
attention, its NTK against the autodiff reference and neural-tangents, the stylized ``prefix``
model as a special case, and the linearised dynamics against kernel regression."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory as T
from theory.kernels import prefix
from theory.validation import InputError
from theory.transformer import lazy as LZ
from theory.transformer import model as M
from theory.transformer import tasks
from theory.transformer import train as TR

CFG = M.TransformerConfig(vocab=6, k=5, T=5, d=8, layers=2, heads=2, d_mlp=12)


def _setup(cfg=CFG, m=3, n=4, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = M.init_params(cfg, key=k1)
    theta = M.init_prefix(cfg, m, key=k2)
    tokens, y = tasks.sample("sub", n, key=k3, p=cfg.k, T=cfg.T)
    return params, theta, tokens, y


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("causal", [False, True])
def test_tied_attention_is_theory_prefix_attention_exactly(causal):
    cfg = dataclasses.replace(CFG, tied=True, causal=causal)
    params, theta, tokens, _ = _setup(cfg)
    lp = params.layers[0]
    X = params.E[tokens[0]]
    P = theta.K[0]
    got = M.attention_heads(cfg, X, P, P, lp.W_Q, lp.W_K, lp.W_V)
    for h in range(cfg.heads):
        want = T.prefix_attention(X, P, lp.W_Q[h], lp.W_K[h], lp.W_V[h], causal=causal)
        np.testing.assert_array_equal(np.asarray(got[h]), np.asarray(want))
    # and inside the jitted forward pass, where XLA may fuse differently: equal to rounding
    jit_heads = jax.jit(lambda X, P: M.attention_heads(cfg, X, P, P, lp.W_Q, lp.W_K, lp.W_V))(X, P)
    np.testing.assert_allclose(np.asarray(jit_heads), np.asarray(got), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("causal", [False, True])
def test_untied_attention_matches_the_definition(causal):
    """Keys [P^K; X] W_K, values [P^V; X] W_V, softmax over prefix and (masked) input block."""
    cfg = dataclasses.replace(CFG, causal=causal)
    params, theta, tokens, _ = _setup(cfg)
    lp = params.layers[1]
    X = params.E[tokens[1]]
    PK, PV = theta.K[1], theta.V[1]
    got = M.attention_layer(cfg, X, PK, PV, lp.W_Q, lp.W_K, lp.W_V, lp.W_O)
    outs = []
    for h in range(cfg.heads):
        q, kk, v = lp.W_Q[h], lp.W_K[h], lp.W_V[h]
        z = (X @ q) @ (jnp.concatenate([PK, X]) @ kk).T / np.sqrt(q.shape[1])
        if causal:
            L, m = X.shape[0], PK.shape[0]
            mask = np.concatenate([np.ones((L, m), bool), np.tril(np.ones((L, L), bool))], axis=1)
            z = jnp.where(mask, z, -jnp.inf)
        outs.append(jax.nn.softmax(z, axis=1) @ (jnp.concatenate([PV, X]) @ v))
    want = jnp.concatenate(outs, axis=-1) @ lp.W_O
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-13)
    # with P^V = P^K the untied path is the tied one, i.e. theory.prefix_attention
    tied = M.attention_layer(dataclasses.replace(cfg, tied=True), X, PK, PK, lp.W_Q, lp.W_K, lp.W_V, lp.W_O)
    untied = M.attention_layer(cfg, X, PK, PK, lp.W_Q, lp.W_K, lp.W_V, lp.W_O)
    np.testing.assert_allclose(np.asarray(untied), np.asarray(tied), rtol=1e-13, atol=1e-14)
    assert not np.allclose(np.asarray(got), np.asarray(tied))  # the value prefix matters


# ----------------------------------------------------------------------------- NTK


@pytest.mark.parametrize("form", ["direct", pytest.param("reparam", marks=pytest.mark.slow)])
def test_prefix_ntk_equals_autodiff_ntk(form):
    cfg = dataclasses.replace(CFG, form=form, d_reparam=4)
    params, theta, tokens, _ = _setup(cfg)
    net = TR.TunedNetwork(cfg)
    scale = TR.output_scale(3, "ntk")
    H = LZ.prefix_ntk(net, theta, params, tokens, scale=scale)
    ref = T.autodiff_ntk(lambda th, t: scale * M.forward(cfg, params, th, t), theta, tokens)
    assert H.shape == (4, 4, cfg.k, cfg.k)
    np.testing.assert_allclose(np.asarray(H), np.asarray(ref), rtol=1e-12, atol=1e-12)
    # NTK scaling multiplies the standard kernel by m
    H_std = LZ.prefix_ntk(net, theta, params, tokens, scale=TR.output_scale(3, "standard"))
    np.testing.assert_allclose(np.asarray(H), 3 * np.asarray(H_std), rtol=1e-12)


@pytest.mark.slow
def test_prefix_ntk_matches_neural_tangents():
    ntcompat = pytest.importorskip("sims.bench.ntcompat")
    ok, why = ntcompat.nt_available()
    if not ok:
        pytest.skip(why)
    nt = ntcompat.import_neural_tangents()
    params, theta, tokens, _ = _setup()
    net = TR.TunedNetwork(CFG)
    H = LZ.prefix_ntk(net, theta, params, tokens, scale=2.0)

    def f(th, t):
        return 2.0 * jax.vmap(lambda s: M.forward(CFG, params, th, s))(t)

    ref = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0)(tokens, None, theta)
    np.testing.assert_allclose(np.asarray(H), np.asarray(ref), rtol=1e-10, atol=1e-10)


def _stylized_case(m=6, d=4, k=2, n=3, input_block=False):
    """One layer, one head, no MLP, no layernorm, tied prefix, identity value/output maps,
    readout W_U[:, :k] = V^T: the network's centred NTK-scaled output is the ``prefix`` model."""
    cfg = M.TransformerConfig(vocab=n + 1, k=k, T=1, d=d, layers=1, heads=1, d_mlp=1, mlp=False, layernorm=False,
                              tied=True, input_block=input_block)
    kp, kq, kv, kt = jax.random.split(jax.random.key(4), 4)
    params = M.init_params(cfg, key=kp)
    V = T.get_model("prefix").init(key=kv, m=1, d=d, k=k)[1].V  # (k, d) readout
    lp = params.layers[0].replace(W_V=jnp.eye(d)[None], W_O=jnp.eye(d))
    W_U = jnp.concatenate([V.T, jnp.zeros((d, cfg.vocab - k))], 1)
    params = params.replace(layers=(lp,), pos=jnp.zeros((1, d)), W_U=W_U)
    theta = M.init_prefix(cfg, m, key=kt, sigma=0.7)
    tokens = jnp.arange(n)[:, None]
    U = T.fold_inputs(params.E[:n], lp.W_Q[0], lp.W_K[0])
    frozen = prefix.PrefixFrozen(V=V, P0=theta.K[0], scale=jnp.sqrt(jnp.asarray(float(m))))
    return cfg, params, theta, tokens, U, frozen


def test_stylized_prefix_model_is_a_special_case():
    cfg, params, theta, tokens, U, frozen = _stylized_case()
    net = TR.TunedNetwork(cfg)
    scale = TR.output_scale(6, "ntk")
    F0 = jax.vmap(lambda t: M.forward(cfg, params, theta, t))(tokens)
    theta1 = theta.replace(K=theta.K + 0.3 * jax.random.normal(jax.random.key(9), theta.K.shape))
    got = net(theta1, (params, tokens, F0, scale))
    want = T.model_outputs("prefix", theta1.K[0], frozen, U)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-13)
    H = LZ.prefix_ntk(net, theta1, params, tokens, scale=scale)
    H_ref = T.structured_ntk("prefix", theta1.K[0], frozen, U)
    np.testing.assert_allclose(np.asarray(H), np.asarray(H_ref), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-13), (jnp.float32, 2e-6)])
@pytest.mark.parametrize("tied", [True, False])
def test_prefix_only_attention_runs_through_prefix_attention_and_drops_the_tokens(dtype, tol, tied):
    """``input_block=False`` is theory.prefix_attention with the input-token weights underflowing
    to exactly 0: it equals a softmax over the prefix rows written out by hand."""
    cfg = dataclasses.replace(CFG, input_block=False, tied=tied)
    ks = jax.random.split(jax.random.key(5), 5)
    X = jax.random.normal(ks[0], (CFG.T, CFG.d), dtype)
    PK, PV = (jax.random.normal(k, (7, CFG.d), dtype) for k in ks[1:3])
    PV = PK if tied else PV
    W_Q, W_K, W_V = (jax.random.normal(k, (CFG.heads, CFG.d, CFG.d // CFG.heads), dtype) for k in
                     jax.random.split(ks[3], 3))
    got = M.attention_heads(cfg, X, PK, PV, W_Q, W_K, W_V)
    for h in range(CFG.heads):
        z = (X @ W_Q[h]) @ (PK @ W_K[h]).T / np.sqrt(W_Q.shape[-1])
        want = jax.nn.softmax(z, axis=-1) @ (PV @ W_V[h])
        np.testing.assert_allclose(np.asarray(got[h]), np.asarray(want), rtol=tol, atol=tol)
    # negative control: with the input block the same heads differ
    assert not np.allclose(np.asarray(M.attention_heads(dataclasses.replace(cfg, input_block=True), X, PK, PV,
                                                        W_Q, W_K, W_V)), np.asarray(got), atol=1e-3)


def test_with_the_input_block_the_stylized_kernel_no_longer_fits():
    """Negative control of the special case: keeping the input-token keys changes the kernel."""
    cfg, params, theta, tokens, U, frozen = _stylized_case(input_block=True)
    H = LZ.prefix_ntk(TR.TunedNetwork(cfg), theta, params, tokens, scale=TR.output_scale(6, "ntk"))
    H_ref = T.structured_ntk("prefix", theta.K[0], frozen, U)
    assert not np.allclose(np.asarray(H), np.asarray(H_ref), rtol=1e-3)


# ----------------------------------------------------------------------------- dynamics


def test_linearised_gd_is_kernel_regression():
    params, theta, tokens, y = _setup()
    net = TR.TunedNetwork(CFG)
    scale = TR.output_scale(3, "ntk")
    F0 = jax.vmap(lambda t: M.forward(CFG, params, theta, t))(tokens)
    Y = tasks.one_hot_targets(y, CFG.k)
    H0 = LZ.prefix_ntk(net, theta, params, tokens, scale=scale)
    eta = 0.5 / float(np.linalg.eigvalsh(np.asarray(T.kernel_matrix(H0)))[-1])
    args = (params, tokens, F0, jnp.asarray(scale))
    lin = TR.fit(LZ.Linearised(net), theta, Y, args=(args, theta), eta=eta, steps=20, log_every=10)
    np.testing.assert_allclose(np.asarray(lin["F"][0]), 0.0, atol=1e-13)  # centred at theta_0 (jit rounding)
    r = T.kernel_regression_residuals(H0, -Y, eta=eta, steps=np.arange(21))
    np.testing.assert_allclose(np.asarray(lin["F"] - Y), np.asarray(r), rtol=1e-9, atol=1e-10)
    # the network itself departs from it (it is not linear at m = 3)
    out = TR.fit(net, theta, Y, args=args, eta=eta, steps=20, log_every=10)
    gap = LZ.linearisation_gap(out["F"][-1], lin["F"][-1], out["F"][0])
    assert 1e-6 < float(gap) < 1.0
    assert out["thetas"].K.shape == (3, CFG.layers, 3, CFG.d)
    np.testing.assert_array_equal(np.asarray(out["thetas"].K[0]), np.asarray(theta.K))
    assert float(out["loss"][-1]) < float(out["loss"][0])


def test_adam_fit_and_movements_are_deterministic():
    params, theta, tokens, y = _setup()
    net = TR.TunedNetwork(CFG)
    F0 = jax.vmap(lambda t: M.forward(CFG, params, theta, t))(tokens)
    args = (params, tokens, F0, jnp.asarray(1.0))
    Y = tasks.one_hot_targets(y, CFG.k)
    a = TR.fit(net, theta, Y, args=args, optimizer="adam", eta=1e-3, steps=10, log_every=5)
    b = TR.fit(net, theta, Y, args=args, optimizer="adam", eta=1e-3, steps=10, log_every=5)
    np.testing.assert_array_equal(np.asarray(a["F"]), np.asarray(b["F"]))
    last = jax.tree_util.tree_map(lambda x: x[-1], a["thetas"])
    rel = float(LZ.relative_change(last, theta))
    rms = float(LZ.rms_row_movement(last, theta))
    # Adam moves every coordinate by about lr per step: rms row movement ~ 10 * 1e-3 * sqrt(d)
    assert 0.2 * 10 * 1e-3 * np.sqrt(CFG.d) < rms < 2 * 10 * 1e-3 * np.sqrt(CFG.d)
    assert rel == pytest.approx(rms / float(jnp.sqrt(jnp.mean(theta.K ** 2 + theta.V ** 2) / 2)) / np.sqrt(CFG.d),
                                rel=1e-9)


@pytest.mark.slow
def test_pretraining_learns_the_copy_task():
    cfg = M.TransformerConfig(vocab=4, k=3, T=4, d=16, layers=1, heads=2, d_mlp=16)
    params = M.init_params(cfg, key=jax.random.key(0))
    _, loss, acc = TR.pretrain(cfg, params, key=jax.random.key(1), task="first", steps=150, batch=64, lr=1e-2)
    assert float(jnp.mean(acc[-20:])) > 0.95 and float(loss[-1]) < 0.3 * float(loss[0])


# ----------------------------------------------------------------------------- input checks


def test_bad_input_is_refused():
    with pytest.raises(T.InputError, match="heads"):
        M.TransformerConfig(d=10, heads=4)
    with pytest.raises(T.InputError, match="form"):
        M.TransformerConfig(form="lora")
    with pytest.raises(T.InputError, match="m"):
        M.init_prefix(CFG, 0, key=jax.random.key(0))
    with pytest.raises(T.InputError, match="sigma"):
        M.init_prefix(CFG, 2, key=jax.random.key(0), sigma=0.0)
    with pytest.raises(T.InputError, match="task"):
        tasks.sample("mul", 3, key=jax.random.key(0), p=5, T=5)
    with pytest.raises(T.InputError, match="parametrization"):
        TR.output_scale(4, "mean-field")
    params, theta, tokens, y = _setup()
    with pytest.raises(T.InputError, match="tokens"):
        LZ.prefix_ntk(TR.TunedNetwork(CFG), theta, params, tokens[:, :3], scale=1.0)
    with pytest.raises(MemoryError):
        LZ.prefix_ntk(TR.TunedNetwork(CFG), theta, params, tokens, scale=1.0, memory_budget=10)
    with pytest.raises(T.InputError, match="optimizer"):
        TR.fit(TR.TunedNetwork(CFG), theta, jnp.zeros((4, CFG.k)), args=None, optimizer="sgd", eta=0.1, steps=2,
               log_every=1)
    with pytest.raises(T.InputError, match="log_every"):
        TR.fit(TR.TunedNetwork(CFG), theta, jnp.zeros((4, CFG.k)), args=None, eta=0.1, steps=3, log_every=2)


# ----------------------------------------------------------------------------- comparison adapters


def test_lora_starts_at_the_base_model_and_applies_the_low_rank_update():
    from theory.transformer import adapters as AD

    params = M.init_params(CFG, key=jax.random.key(0))
    tok = jnp.arange(CFG.T) % CFG.vocab
    lora = AD.init_lora(CFG, 3, key=jax.random.key(1))
    base = M.forward(CFG, params, None, tok)
    assert jnp.array_equal(AD.adapted_forward(CFG, "lora", params, lora, tok), base)
    lora = lora.replace(B=jax.random.normal(jax.random.key(2), lora.B.shape))
    new = AD.lora_params(CFG, params, lora)
    dh = CFG.d // CFG.heads
    for l, lp in enumerate(params.layers):
        full_Q = jnp.concatenate(list(lp.W_Q), axis=1) + lora.A[l, 0] @ lora.B[l, 0]
        np.testing.assert_allclose(np.asarray(new.layers[l].W_Q[1]), np.asarray(full_Q[:, dh:2 * dh]),
                                   atol=1e-14)
        assert jnp.array_equal(new.layers[l].W_K, lp.W_K)
    assert not jnp.allclose(AD.adapted_forward(CFG, "lora", params, lora, tok), base)
    assert AD.lora_rank(CFG, 1) == 1 and AD.lora_rank(CFG, 8) == 4 and AD.lora_rank(CFG, 10**6) == CFG.d
    r = AD.lora_rank(CFG, 8)
    assert AD.lora_parameter_count(CFG, r) == M.n_params(AD.init_lora(CFG, r, key=jax.random.key(0))) \
        == M.n_params(M.init_prefix(CFG, 8, key=jax.random.key(0)))


def test_ntk_attention_summary_converges_to_the_prefix_model_in_the_taylor_degree():
    from theory.transformer import adapters as AD

    params = M.init_params(CFG, key=jax.random.key(0))
    tok = jnp.arange(CFG.T) % CFG.vocab
    theta = M.init_prefix(CFG, 7, key=jax.random.key(1), sigma=0.3)
    exact = M.forward(CFG, params, theta, tok)
    errs = []
    for g in (1, 2, 4, 6):
        s = AD.init_ntk_attention(CFG, params, theta, g=g)
        assert M.n_params(s) == AD.ntk_attention_parameter_count(CFG, g)
        errs.append(float(jnp.max(jnp.abs(AD.adapted_forward(CFG, "ntk-attention", params, s, tok, g=g, rows=7) - exact))))
    assert all(b < a / 2 for a, b in zip(errs, errs[1:])) and errs[-1] < 1e-7, errs
    # negative control: the summary of another prefix does not reproduce this one
    other = AD.init_ntk_attention(CFG, params, M.init_prefix(CFG, 7, key=jax.random.key(9), sigma=0.3), g=6)
    assert float(jnp.max(jnp.abs(AD.adapted_forward(CFG, "ntk-attention", params, other, tok, g=6, rows=7) - exact))) > 100 * errs[-1]
    with pytest.raises(InputError, match="adapter"):
        AD.adapted_forward(CFG, "adapterless", params, theta, tok)


@pytest.mark.parametrize("adapter", ["lora", "ntk-attention"])
def test_adapter_ntk_equals_autodiff(adapter):
    from theory.transformer import adapters as AD

    params = M.init_params(CFG, key=jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(3), (3, CFG.T), 0, CFG.vocab)
    prefix = M.init_prefix(CFG, 4, key=jax.random.key(1), sigma=0.3)
    theta = (AD.init_ntk_attention(CFG, params, prefix, g=2) if adapter == "ntk-attention"
             else AD.init_lora(CFG, 2, key=jax.random.key(1)).replace(B=0.1 * jnp.ones((CFG.layers, 2, 2, CFG.d))))
    net = TR.TunedNetwork(CFG, adapter=adapter, g=2, rows=4 if adapter == "ntk-attention" else 1)
    H = LZ.prefix_ntk(net, theta, params, tokens, scale=1.0)
    ref = T.autodiff_ntk(lambda th, t: net.single(th, params, t), theta, tokens)
    np.testing.assert_allclose(np.asarray(H), np.asarray(ref), rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(ref))))


def test_prefix_logit_spread_scales_with_sigma():
    params = M.init_params(CFG, key=jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(3), (3, CFG.T), 0, CFG.vocab)
    th = M.init_prefix(CFG, 16, key=jax.random.key(1), sigma=1.0)
    s1 = float(LZ.prefix_logit_spread(CFG, params, th, tokens))
    s01 = float(LZ.prefix_logit_spread(CFG, params, jax.tree_util.tree_map(lambda a: 0.1 * a, th), tokens))
    assert s1 > 0 and abs(s01 / s1 - 0.1) < 1e-12  # logits are linear in the prefix keys
    with pytest.raises(InputError, match="tokens"):
        LZ.prefix_logit_spread(CFG, params, th, tokens[0])


def _share_by_hand(cfg, params, theta, tokens):
    """The prefix's attention share in layer 0, written out with numpy loops (causal, untied)."""
    lp = {f: np.asarray(getattr(params.layers[0], f)) for f in M.LayerWeights.field_names()}
    PK = np.asarray(M.prefixes(cfg, theta)[0][0])
    E, pos = np.asarray(params.E), np.asarray(params.pos)
    shares = []
    for seq in np.asarray(tokens):
        X = E[seq] + pos[: cfg.T]
        mu, var = X.mean(-1, keepdims=True), X.var(-1, keepdims=True)
        h = (X - mu) / np.sqrt(var + M.LN_EPS) * lp["g1"] + lp["c1"]
        for hd in range(cfg.heads):
            q, kX, kP = h @ lp["W_Q"][hd], h @ lp["W_K"][hd], PK @ lp["W_K"][hd]
            dh = q.shape[1]
            for i in range(cfg.T):
                z = np.concatenate([kP @ q[i], kX[: i + 1] @ q[i]]) / np.sqrt(dh)
                w = np.exp(z - z.max())
                shares.append(w[: len(kP)].sum() / w.sum())
    return float(np.mean(shares))


def test_prefix_attention_share_matches_a_hand_softmax_and_grows_with_m():
    params = M.init_params(CFG, key=jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(3), (3, CFG.T), 0, CFG.vocab)
    shares = []
    for m in (1, 16, 256):
        th = M.init_prefix(CFG, m, key=jax.random.key(1), sigma=0.1)
        s = float(LZ.prefix_attention_share(CFG, params, th, tokens))
        np.testing.assert_allclose(s, _share_by_hand(CFG, params, th, tokens), rtol=1e-12)
        shares.append(s)
    assert 0 < shares[0] < 0.5 < shares[2] < 1 and shares[0] < shares[1] < shares[2]
    with pytest.raises(InputError, match="tokens"):
        LZ.prefix_attention_share(CFG, params, th, tokens[0])
