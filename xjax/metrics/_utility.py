"""Human-centred utility of explanations ("What I cannot predict, I do not understand"), with
automated meta-predictors standing in for the human participants."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from xjax._internal.validate import check_positive_int
from xjax.metrics._common import spatial

__all__ = ["MetaPredictor", "UtilityResult", "cnn_meta_predictor", "explanation_weights",
           "similarity_meta_predictor", "simulatability", "utility_protocol", "utility_score"]


def utility_score(accuracy: Float[np.ndarray, "... S"],
                  baseline_accuracy: Float[np.ndarray, "... S"]) -> np.ndarray:
    r"""Utility of an explanation method (Colin, Fel et al., NeurIPS 2022):

    .. math:: \mathrm{Utility} = \frac{\frac{1}{S}\sum_s \mathrm{acc}_s(\text{method})}
       {\frac{1}{S}\sum_s \mathrm{acc}_s(\text{baseline})}

    over the S training sessions of the meta-predictors (> 1: the explanations helped them
    predict the model). Leading axes (seeds, methods) broadcast."""
    a = np.asarray(accuracy, np.float64)
    b = np.asarray(baseline_accuracy, np.float64)
    if a.shape[-1:] != b.shape[-1:] or a.ndim == 0:
        raise ValueError(f"utility_score: accuracy and baseline_accuracy need the same number of "
                         f"sessions on their last axis, got shapes {a.shape} and {b.shape}")
    return a.mean(-1) / b.mean(-1)


def explanation_weights(maps: Float[Array, "N H W ..."] | None, shape) -> Float[Array, "N H W"]:
    """Where to look, from an explanation: ``|phi|`` (channel mean), divided by its per-image
    maximum, so in [0, 1]; ``None`` (no explanation) gives uniform weights of 1.

    An empty map (all zero: Grad-CAM often gives one) says nothing about where to look, so it
    gets the uniform weights of no explanation, not weights of 0 (which would make the exemplar
    match everything); a NaN map stays NaN."""
    if maps is None:
        return jnp.ones(shape[:3], jnp.float32)
    m = jnp.abs(spatial(jnp.asarray(maps)).astype(jnp.float32))
    top = m.max(axis=(1, 2), keepdims=True)
    return jnp.where(top == 0, 1.0, m / jnp.where(top == 0, 1.0, top))


class MetaPredictor(NamedTuple):
    """A learner of the model's decisions.

    ``fit(x, weights, decisions, valid, key) -> state`` learns from exemplars (``weights`` from
    :func:`explanation_weights`, all ones when the condition has no explanation; ``valid`` marks
    real rows so every session has the same shapes); ``predict(state, x) -> i32[N]`` sees images
    only, as the participants of the test phase."""

    fit: Callable
    predict: Callable


def similarity_meta_predictor(*, num_classes: int) -> MetaPredictor:
    r"""Nearest exemplar under the exemplar's explanation: the prediction for :math:`\tilde x`
    is the decision of the exemplar :math:`k` minimising
    :math:`\sum_{hw} w_{k,hw} \|\tilde x_{hw} - x_{k,hw}\|^2 / \sum_{hw} w_{k,hw}`, i.e. the
    learner compares new images with what it was shown, *where it was told to look*. With
    uniform weights it is plain 1-nearest-neighbour (the no-explanation baseline)."""
    check_positive_int(num_classes, "num_classes", where="similarity_meta_predictor")

    def fit(x, weights, decisions, valid, key=None):
        del key
        return {"x": x, "w": weights, "d": decisions, "valid": valid}

    @jax.jit
    def predict(state, x):
        diff = (x[:, None] - state["x"][None]) ** 2                      # [N, K, H, W, C]
        num = jnp.einsum("nkhwc,khw->nk", diff, state["w"])
        dist = num / jnp.maximum(state["w"].sum(axis=(1, 2)), 1e-12)[None]
        dist = jnp.where(state["valid"][None], dist, jnp.inf)
        return state["d"][jnp.argmin(dist, axis=1)]

    return MetaPredictor(fit, predict)


def _cnn_init(key, shape, num_classes, width):
    h, w, c = shape
    k1, k2, k3 = jax.random.split(key, 3)
    he = lambda k, s, fan: jax.random.normal(k, s) * jnp.sqrt(2.0 / fan)
    flat = -(-h // 4) * -(-w // 4) * 2 * width
    return {"c1": he(k1, (3, 3, c, width), 9 * c), "b1": jnp.zeros((width,)),
            "c2": he(k2, (3, 3, width, 2 * width), 9 * width), "b2": jnp.zeros((2 * width,)),
            "d": he(k3, (flat, num_classes), flat), "bd": jnp.zeros((num_classes,))}


def _cnn_apply(p, x):
    dn = ("NHWC", "HWIO", "NHWC")
    a = jax.lax.conv_general_dilated(x, p["c1"], (2, 2), "SAME", dimension_numbers=dn)
    a = jax.nn.relu(a + p["b1"].reshape(1, 1, 1, -1))
    a = jax.lax.conv_general_dilated(a, p["c2"], (2, 2), "SAME", dimension_numbers=dn)
    a = jax.nn.relu(a + p["b2"].reshape(1, 1, 1, -1))
    return a.reshape(a.shape[0], -1) @ p["d"] + p["bd"][None]      # flattened: keeps *where*


def cnn_meta_predictor(*, num_classes: int, width: int = 16, steps: int = 150,
                       learning_rate: float = 3e-3, explanation_weight: float = 1.0) -> MetaPredictor:
    r"""A small CNN trained on the exemplars, "right for the right reasons" (after Ross et al.,
    2017) when it is shown explanations:

    .. math:: \mathcal{L} = \mathrm{CE}(g(x_k), f(x_k)) + \lambda\,
       \frac{\|(1 - w_k) \odot \nabla_x \sum_c \log p_c(x_k)\|^2}
       {\|\nabla_x \sum_c \log p_c(x_k)\|^2}

    the share of the learner's own input-gradient energy that falls where the explanation says
    nothing matters (in [0, 1]; a zero gradient counts as 1, so a dead network is no escape; Ross
    et al. penalize the unnormalized energy, which here lets the learner collapse to a constant).
    With uniform weights (no explanation) the penalty is 0. Full-batch Adam for ``steps`` steps
    in one jitted ``lax.scan``; two stride-2 convolutions and a dense layer on the flattened map
    (not a global pool, so the learner can tell *where* a feature is).

    Args:
      num_classes: number of model decisions to predict.
      width: channels of the first layer (16; the second has twice as many).
      steps: training steps (150); learning_rate: Adam step (3e-3).
      explanation_weight: lambda (1.0).

    References:
      A. S. Ross, M. C. Hughes, F. Doshi-Velez, "Right for the Right Reasons", IJCAI 2017,
      arXiv:1703.03717.
    """
    check_positive_int(num_classes, "num_classes", where="cnn_meta_predictor")
    steps = check_positive_int(steps, "steps", where="cnn_meta_predictor")
    opt = optax.adam(learning_rate)

    @jax.jit
    def fit(x, weights, decisions, valid, key):
        params = _cnn_init(key, x.shape[1:], num_classes, width)
        v = valid.astype(jnp.float32)

        def loss(p):
            logp = jax.nn.log_softmax(_cnn_apply(p, x))
            ce = -jnp.take_along_axis(logp, decisions[:, None], axis=1)[:, 0]
            g = jax.grad(lambda xi: jnp.sum(jax.nn.log_softmax(_cnn_apply(p, xi))))(x)
            outside = jnp.sum(((1.0 - weights)[..., None] * g) ** 2, axis=(1, 2, 3))
            total = jnp.sum(g * g, axis=(1, 2, 3))
            # share of the learner's gradient energy outside the explanation, in [0, 1]; a dead
            # network (zero gradient) gets the worst share, so it is no escape
            share = jnp.where(total > 1e-12, outside / jnp.maximum(total, 1e-12), 1.0)
            return jnp.sum(v * (ce + explanation_weight * share)) / jnp.maximum(v.sum(), 1.0)

        def step(carry, _):
            p, s = carry
            grads = jax.grad(loss)(p)
            with jax.numpy_dtype_promotion("standard"):      # optax mixes int counters in
                updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(params)
        (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
        return params

    @jax.jit
    def predict(params, x):
        return jnp.argmax(_cnn_apply(params, x), axis=-1).astype(jnp.int32)

    return MetaPredictor(fit, predict)


def simulatability(meta: MetaPredictor, x_train: Float[Array, "K H W C"],
                   maps_train: Float[Array, "K H W"] | None, decisions_train: Int[Array, " K"],
                   x_test: Float[Array, "T H W C"], decisions_test: Int[Array, " T"], *,
                   sessions: int = 3, key: jax.Array) -> np.ndarray:
    """Accuracy of a meta-predictor at predicting the model's decisions after each training
    session: session s shows the first ``s K / S`` exemplars (cumulative, as a participant who
    keeps what earlier sessions taught), then tests on ``x_test`` without explanations.
    Agreement is with the model's decision, not with the ground truth.

    Returns:
      ``f64[S]`` test accuracies in [0, 1].
    """
    sessions = check_positive_int(sessions, "sessions", where="simulatability")
    k = x_train.shape[0]
    if k % sessions:
        raise ValueError(f"simulatability: the number of exemplars ({k}) must be divisible by "
                         f"sessions={sessions}")
    if decisions_train.shape != (k,) or decisions_test.shape != (x_test.shape[0],):
        raise ValueError(f"simulatability: decisions_train must be ({k},) and decisions_test "
                         f"({x_test.shape[0]},), got {decisions_train.shape} and "
                         f"{decisions_test.shape}")
    if maps_train is not None and tuple(maps_train.shape[:3]) != tuple(x_train.shape[:3]):
        raise ValueError(f"simulatability: maps_train must have shape {tuple(x_train.shape[:3])} "
                         f"(K, H, W), got {tuple(maps_train.shape)}")
    weights = explanation_weights(maps_train, x_train.shape)
    acc = []
    for s in range(1, sessions + 1):
        valid = jnp.arange(k) < s * (k // sessions)
        state = meta.fit(x_train, weights, decisions_train, valid, jax.random.fold_in(key, s))
        acc.append(float(jnp.mean(meta.predict(state, x_test) == decisions_test)))
    return np.asarray(acc)


class UtilityResult(NamedTuple):
    """Per condition: ``accuracy`` f64[seeds, S], ``utility`` f64[seeds] (per-seed ratio to the
    baseline of the same exemplars), ``mean`` and the 95% bootstrap interval ``low, high``."""

    accuracy: dict
    utility: dict
    mean: dict
    low: dict
    high: dict


def utility_protocol(meta: MetaPredictor, explain: Callable, x_pool, decisions_pool, x_test,
                     decisions_test, *, conditions, exemplars: int = 30, sessions: int = 3,
                     seeds: int = 5, key: jax.Array, progress: Callable | None = None
                     ) -> UtilityResult:
    """Rank explanation methods by the utility they give a meta-predictor.

    For each seed, ``exemplars`` inputs are drawn from ``x_pool`` (the same draw for every
    condition, so conditions differ only by their explanations); each condition
    ``name -> maps_fn`` is explained with ``explain(name, x) -> maps`` (``None`` for the baseline,
    which must be one of the conditions as ``"baseline"``) and scored with :func:`simulatability`.

    Returns:
      :class:`UtilityResult`; the interval is a percentile bootstrap over seeds (2000 resamples).
    """
    if "baseline" not in conditions:
        raise ValueError("utility_protocol: conditions must include 'baseline' (no explanation)")
    seeds = check_positive_int(seeds, "seeds", where="utility_protocol")
    n = len(x_pool)
    if exemplars > n:
        raise ValueError(f"utility_protocol: exemplars={exemplars} exceeds the pool size {n}")
    acc = {c: [] for c in conditions}
    for s in range(seeds):
        k_draw, k_fit = jax.random.split(jax.random.fold_in(key, s))
        idx = np.asarray(jax.random.choice(k_draw, n, (exemplars,), replace=False))
        xs, ds = jnp.asarray(x_pool[idx]), jnp.asarray(decisions_pool[idx], jnp.int32)
        for c in conditions:
            maps = None if c == "baseline" else explain(c, xs, ds)
            acc[c].append(simulatability(meta, xs, maps, ds, jnp.asarray(x_test),
                                         jnp.asarray(decisions_test, jnp.int32),
                                         sessions=sessions, key=k_fit))
            if progress is not None:
                progress(s, c)
    acc = {c: np.stack(v) for c, v in acc.items()}
    util = {c: utility_score(acc[c], acc["baseline"]) for c in conditions}
    rng = np.random.default_rng(0)
    boot = rng.integers(0, seeds, (2000, seeds))
    low, high, mean = {}, {}, {}
    for c in conditions:
        means = util[c][boot].mean(axis=1)
        mean[c] = float(util[c].mean())
        low[c], high[c] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    return UtilityResult(acc, util, mean, low, high)
