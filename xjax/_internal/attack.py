"""The smallest adversarial radius of a masked projected gradient attack, one shared mechanism
for Robustness-S_r (:mod:`xjax.metrics`) and Greedy-AS (:mod:`xjax.attributions`)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax.attributions._score import logit

NORMS = ("linf", "l2")


def margin(logits: Float[Array, "B K"], y) -> Float[Array, " B"]:
    """Best rival logit minus the logit of ``y``: > 0 means the decision changed (NaN for a
    label outside [0, K), as :func:`xjax.attributions.logit`)."""
    true = logit(logits, y)
    rivals = jnp.where(jax.nn.one_hot(y, logits.shape[1], dtype=jnp.bool_), -jnp.inf, logits)
    return rivals.max(axis=1) - true


def minimal_radius(model_fn, *, norm: str, epsilon_max: float, search_steps: int,
                   pgd_steps: int, step_scale: float, clip):
    r"""``radius(params, x, y, mask) -> f32[B]``: per row, the smallest radius (``norm`` ball)
    at which a projected gradient attack on the margin, supported on ``mask`` (1 where the
    attack may change the input), changes the decision.

    A binary search over :math:`[0, \epsilon_{max}]` (``search_steps`` halvings); each candidate
    runs ``pgd_steps`` steps of size ``step_scale * eps / pgd_steps`` from ``x`` (sign steps for
    ``linf``, normalized gradient steps for ``l2``), projected on the ball and on ``clip``. A row
    no attack fools gets :math:`\epsilon_{max}`, a row already misclassified gets 0, a label out
    of range gets NaN. The value is an upper bound of the true minimal radius (attacks are
    heuristics). Arguments are validated by the public callers.
    """
    def project(delta, x, eps):
        if norm == "linf":
            delta = jnp.clip(delta, -eps, eps)
        else:
            n2 = jnp.sqrt(jnp.sum(delta * delta, axis=(1, 2, 3), keepdims=True))
            delta = delta * jnp.minimum(1.0, eps / jnp.maximum(n2, 1e-12))
        if clip is not None:
            delta = jnp.clip(x + delta, clip[0], clip[1]) - x
        return delta

    def radius(params, x, y, mask) -> Float[Array, " B"]:
        def fooled(xb):
            return margin(model_fn(params, xb).astype(jnp.float32), y) > 0

        grad = jax.grad(lambda xb: jnp.sum(margin(model_fn(params, xb).astype(jnp.float32), y)))

        def attack(eps):                                   # eps: f32[B] -> success bool[B]
            e = eps[:, None, None, None].astype(x.dtype)
            alpha = step_scale * e / pgd_steps

            def step(_, state):
                delta, hit = state
                g = grad(x + delta) * mask
                if norm == "linf":
                    d = jnp.sign(g)
                else:
                    d = g / jnp.maximum(jnp.sqrt(jnp.sum(g * g, axis=(1, 2, 3), keepdims=True)),
                                        1e-12)
                delta = project(delta + alpha * d, x, e) * mask
                return delta, hit | fooled(x + delta)

            _, hit = jax.lax.fori_loop(0, pgd_steps, step, (jnp.zeros_like(x), fooled(x)))
            return hit

        b = x.shape[0]
        hi = jnp.full((b,), epsilon_max, jnp.float32)
        ok = attack(hi)

        def search(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) / 2.0
            hit = attack(mid)
            return jnp.where(hit, lo, mid), jnp.where(hit, mid, hi)

        _, hi = jax.lax.fori_loop(0, search_steps, search, (jnp.zeros((b,), jnp.float32), hi))
        m = margin(model_fn(params, x).astype(jnp.float32), y)
        value = jnp.where(m > 0, 0.0, jnp.where(ok, hi, epsilon_max))
        return jnp.where(jnp.isnan(m), jnp.nan, value)     # a label outside [0, K)

    return radius


def check_attack(where: str, *, norm, epsilon_max, step_scale, clip) -> None:
    """The attack hyperparameters' eager checks, shared by the public callers."""
    if norm not in NORMS:
        raise ValueError(f"{where}: norm must be one of {NORMS}, got {norm!r}")
    if not epsilon_max > 0:
        raise ValueError(f"{where}: epsilon_max must be > 0, got {epsilon_max}")
    if not step_scale > 0:
        raise ValueError(f"{where}: step_scale must be > 0, got {step_scale}")
    if clip is not None and not clip[0] < clip[1]:
        raise ValueError(f"{where}: clip must be (low, high) with low < high, got {clip}")
