"""Stability of explanations under small input changes, and randomization sanity checks."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_key
from xjax.metrics._common import spatial, spearman
from xjax.typing import Explainer

__all__ = ["average_stability", "label_randomization", "model_randomization", "randomize_params",
           "ssim"]

_DISTANCES = ("l2", "l1")


def _call(explainer, params, x, y, key):
    return explainer(params, x, y, key=key)


def average_stability(explainer: Explainer, *, radius: float = 0.1, nb_samples: int = 20,
                      distance: str | Callable = "l2"):
    r"""Average stability (Bhatt et al., 2020, def. 2): mean distance between the explanation
    of ``x`` and of neighbours ``x + u``, :math:`u \sim U[0, r)^{H W C}`; lower is better.

    The ``nb_samples`` neighbours are explained one after the other in a ``lax.scan`` (the
    explainer's ``batch_size`` still bounds every model call); the same noise draws serve every
    image of a call.

    Args:
      explainer: any xjax explainer.
      radius: r (0.1, Xplique; one-sided noise as Xplique).
      nb_samples: neighbours per image (20).
      distance: ``"l2"``, ``"l1"`` (on flattened maps) or a callable ``(a, b) -> f32[N]``.

    Returns:
      ``metric(params, x, y, *, key) -> f32[N]`` (non-negative).
    """
    nb_samples = check_positive_int(nb_samples, "nb_samples", where="average_stability")
    if not callable(distance) and distance not in _DISTANCES:
        raise ValueError(f"average_stability: distance must be one of {_DISTANCES} or a callable, "
                         f"got {distance!r}")
    if isinstance(radius, (int, float)) and radius <= 0:
        raise ValueError(f"average_stability: radius must be > 0, got {radius}")

    def dist(a, b):
        if callable(distance):
            return distance(a, b)
        diff = (a - b).reshape(a.shape[0], -1)
        return (jnp.sqrt(jnp.sum(diff * diff, -1)) if distance == "l2"
                else jnp.sum(jnp.abs(diff), -1))

    def metric(params, x: Float[Array, "N H W C"], y, *, key=None) -> Float[Array, " N"]:
        check_key(key, "average_stability")
        k_ref, k_noise = jax.random.split(key)
        ref = _call(explainer, params, x, y, k_ref)

        def body(total, s):
            k = jax.random.fold_in(k_noise, s)
            k_u, k_e = jax.random.split(k)
            u = jax.random.uniform(k_u, x.shape[1:], x.dtype, 0.0, radius)
            return total + dist(ref, _call(explainer, params, x + u[None], y, k_e)), None

        total, _ = jax.lax.scan(body, jnp.zeros((x.shape[0],), jnp.float32),
                                jnp.arange(nb_samples))
        return total / nb_samples

    return metric


def randomize_params(params, key: jax.Array, *, fraction: float = 1.0):
    """Re-draw the last ``fraction`` of the floating-point leaves (in flattening order) from a
    normal law with each leaf's own standard deviation (Adebayo et al.'s randomization; the
    order of an nnx State is alphabetical, so pass your own function for layer-cascading)."""
    leaves, tree = jax.tree.flatten(params)
    floating = [i for i, a in enumerate(leaves) if jnp.issubdtype(jnp.asarray(a).dtype,
                                                                   jnp.floating)]
    start = int(round(len(floating) * (1.0 - fraction)))
    chosen = set(floating[start:])
    keys = jax.random.split(key, len(leaves))
    out = [jax.random.normal(k, a.shape, a.dtype) * jnp.maximum(jnp.std(a), 1e-3).astype(a.dtype)
           if i in chosen else a for i, (k, a) in enumerate(zip(keys, leaves, strict=True))]
    return jax.tree.unflatten(tree, out)


def model_randomization(explainer: Explainer, *, randomize: Callable = randomize_params):
    r"""Model-parameter randomization test (Adebayo et al., 2018): Spearman correlation between
    each image's explanation under the trained parameters and under randomized ones. An
    explanation that depends on what the model learned gets a low value (lower is better).

    Args:
      explainer: any xjax explainer.
      randomize: ``(params, key) -> params`` (default :func:`randomize_params`: every floating
        leaf re-drawn).

    Returns:
      ``metric(params, x, y, *, key) -> f32[N]`` in [-1, 1].

    References:
      J. Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292.
    """

    def metric(params, x, y, *, key=None):
        check_key(key, "model_randomization")
        k_rand, k_e = jax.random.split(key)
        a = spatial(_call(explainer, params, x, y, k_e))
        b = spatial(_call(explainer, randomize(params, k_rand), x, y, k_e))
        n = a.shape[0]
        return spearman(a.reshape(n, -1), b.reshape(n, -1))

    return metric


def ssim(a: Float[Array, "N H W"], b: Float[Array, "N H W"], *, window: int = 7
         ) -> Float[Array, " N"]:
    """Structural similarity (Wang et al., 2004) of maps, each pair scaled to its joint range,
    with a uniform ``window x window`` window (C1 = 0.01^2, C2 = 0.03^2 on [0, 1])."""
    from xjax._internal.validate import check_map_batch, check_positive_int

    check_map_batch(a, "a", where="ssim")
    check_map_batch(b, "b", where="ssim")
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim: a and b must be maps of one shape [N, H, W], got {a.shape} and "
                         f"{b.shape}")
    check_positive_int(window, "window", where="ssim")
    lo = jnp.minimum(a.min((1, 2), keepdims=True), b.min((1, 2), keepdims=True))
    hi = jnp.maximum(a.max((1, 2), keepdims=True), b.max((1, 2), keepdims=True))
    scale = jnp.maximum(hi - lo, 1e-12)
    a, b = (a - lo) / scale, (b - lo) / scale
    win = min(window, a.shape[1], a.shape[2])

    def mean(t):
        s = jax.lax.reduce_window(t, 0.0, jax.lax.add, (1, win, win), (1, 1, 1), "VALID")
        return s / (win * win)

    ma, mb = mean(a), mean(b)
    va, vb, cov = mean(a * a) - ma ** 2, mean(b * b) - mb ** 2, mean(a * b) - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return s.mean((1, 2))


def label_randomization(explainer: Explainer, *, num_classes: int):
    r"""Random-logit test (Sixt et al., 2020; Xplique's ``RandomLogitMetric``): SSIM between the
    explanation of the true class and of a uniformly drawn other class; lower is better (an
    explanation that ignores the class gets 1).

    Returns:
      ``metric(params, x, y, *, key) -> f32[N]``.
    """
    num_classes = check_positive_int(num_classes, "num_classes", where="label_randomization",
                                     minimum=2)

    def metric(params, x, y, *, key=None):
        check_key(key, "label_randomization")
        k_lab, k_e = jax.random.split(key)
        shift = jax.random.randint(k_lab, y.shape, 1, num_classes)
        other = ((y + shift) % num_classes).astype(y.dtype)
        a = spatial(_call(explainer, params, x, y, k_e))
        b = spatial(_call(explainer, params, x, other, k_e))
        return ssim(a, b)

    return metric
