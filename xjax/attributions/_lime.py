"""LIME and KernelSHAP on image segments, with the surrogate fitted in JAX.

Both draw coalitions ``z in {0, 1}^d`` over d segments (the same draws for every input, from
``key``), score the model on ``x * z[seg] + baseline * (1 - z[seg])``, and fit a weighted linear
surrogate ``s ~ b + z . phi`` per input; each pixel gets its segment's coefficient. Because
the draws and weights are shared, the normal equations are factorized once and every input's
coefficients are one matrix-vector product.

Segmentations: ``"grid"`` (``grid_size x grid_size`` cells), ``"slic"`` (SLIC superpixels
computed in JAX, per input, inside the explanation), a callable ``f32[H, W, C] -> i32[H, W]``,
or per-input labels passed at call time (``segments=i32[N, H, W]``).
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from xjax._internal.validate import check_positive_int
from xjax.attributions._common import check_batch_size, check_key, guarded, score_table
from xjax.attributions._score import logit
from xjax.typing import Explainer, ModelFn, ScoreFn

__all__ = ["grid_segments", "kernel_shap", "lime", "slic_segments"]


def grid_segments(h: int, w: int, grid_size: int) -> Int[Array, "H W"]:
    """Labels of a ``grid_size x grid_size`` partition of an ``h x w`` image (row-major)."""
    rows = jnp.minimum(jnp.arange(h) * grid_size // h, grid_size - 1)
    cols = jnp.minimum(jnp.arange(w) * grid_size // w, grid_size - 1)
    return rows[:, None] * grid_size + cols[None, :]


def slic_segments(image: Float[Array, "H W C"], *, nb_segments: int = 64,
                  compactness: float = 0.1, iterations: int = 10) -> Int[Array, "H W"]:
    r"""SLIC superpixels (Achanta et al., 2012) in JAX, on RGB values in [0, 1].

    k-means on ``[c, (m / S) i, (m / S) j]`` from a regular grid of ``g = round(sqrt(K))^2``
    centres, ``S = sqrt(HW / K)``, ``m = compactness`` (0.1 on [0, 1] colours is skimage's 10 on
    Lab). Every pixel is compared with every centre (no 2S window), which is exact k-means and
    cheap at these sizes. Returns labels in ``[0, g^2)``; a label may be empty.
    """
    h, w, c = image.shape
    g = max(1, round(math.sqrt(nb_segments)))
    step = math.sqrt(h * w / (g * g))
    ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    scale = compactness / step
    feats = jnp.concatenate([image.astype(jnp.float32).reshape(h * w, c),
                             (scale * ii).reshape(-1, 1), (scale * jj).reshape(-1, 1)], axis=1)
    init = grid_segments(h, w, g).reshape(-1)
    counts = jax.ops.segment_sum(jnp.ones((h * w,), jnp.float32), init, g * g)
    centers = jax.ops.segment_sum(feats, init, g * g) / jnp.maximum(counts, 1.0)[:, None]

    def body(centers, _):
        d = ((feats[:, None, :] - centers[None, :, :]) ** 2).sum(-1)     # [HW, K]
        labels = jnp.argmin(d, axis=1)
        cnt = jax.ops.segment_sum(jnp.ones((h * w,), jnp.float32), labels, g * g)
        new = jax.ops.segment_sum(feats, labels, g * g) / jnp.maximum(cnt, 1.0)[:, None]
        return jnp.where(cnt[:, None] > 0, new, centers), None

    centers, _ = jax.lax.scan(body, centers, None, length=iterations)
    d = ((feats[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return jnp.argmin(d, axis=1).reshape(h, w).astype(jnp.int32)


def _segmenter(name, segmentation, grid_size, nb_segments):
    if segmentation == "grid":
        grid_size = check_positive_int(grid_size, "grid_size", where=name)
        return (lambda xi: grid_segments(xi.shape[0], xi.shape[1], grid_size)), grid_size ** 2
    if segmentation == "slic":
        nb_segments = check_positive_int(nb_segments, "nb_segments", where=name)
        g = max(1, round(math.sqrt(nb_segments)))
        return (lambda xi: slic_segments(xi, nb_segments=nb_segments)), g * g
    if callable(segmentation):
        nb_segments = check_positive_int(nb_segments, "nb_segments", where=name)
        return segmentation, nb_segments
    raise ValueError(f"{name}: segmentation must be 'grid', 'slic' or a callable, got "
                     f"{segmentation!r}")


def _surrogate_explainer(name, model_fn, *, draw, solve, segmenter, baseline, score_fn, batch_size):
    @guarded(name, model_fn, score_fn)
    def explainer(params, x: Float[Array, "N H W C"], y, *, key=None, segments=None):
        check_key(key, name)
        n, h, w = x.shape[:3]
        if segments is None:
            segments = jax.vmap(segmenter)(x)
        elif tuple(segments.shape) != (n, h, w):
            raise ValueError(f"{name}: segments must be i32[N, H, W] = {(n, h, w)}, got shape "
                             f"{tuple(segments.shape)}")
        z = draw(key)                                                   # [P, d] in {0, 1}
        b = jnp.asarray(baseline, x.dtype)

        def apply(xi_seg, zp):
            xi, seg = xi_seg
            m = jnp.take(zp, seg).astype(xi.dtype)[..., None]
            return xi * m + b * (1.0 - m)

        scores = score_table(model_fn, score_fn, params, (x, segments), y, z.shape[0],
                             lambda p: z[p], apply, batch_size=batch_size)    # [N, P]
        phi = solve(z.astype(jnp.float32), scores)                      # [N, d]
        return jax.vmap(lambda p, seg: jnp.take(p, seg))(phi, segments)

    return explainer


def lime(model_fn: ModelFn, *, nb_samples: int = 150, segmentation="slic", nb_segments: int = 64,
         grid_size: int = 8, preservation_probability: float = 0.5, baseline: float = 0.0,
         kernel_width: float = 0.25, ridge: float = 1.0, score_fn: ScoreFn = logit,
         batch_size: int | None = 64) -> Explainer:
    r"""LIME (Ribeiro et al., 2016) with a weighted ridge surrogate over image segments.

    Coalitions: ``z_0 = 1`` (the image itself) and ``z_p ~ Bernoulli(preservation_probability)``.
    Weights: the original implementation's kernel on the cosine distance to ``z_0``,
    :math:`\pi(z) = \sqrt{\exp(-d(z, 1)^2 / w^2)}` with ``w = kernel_width = 0.25``. Surrogate:

    .. math:: \hat\phi = \arg\min_{b, \phi} \sum_p \pi_p (s_p - b - z_p \cdot \phi)^2
       + \lambda \lVert \phi \rVert^2

    Args:
      model_fn, score_fn: as :func:`saliency`.
      nb_samples: P coalitions (150, Xplique's default), including ``z_0``.
      segmentation: ``"slic"`` (default, ``nb_segments`` superpixels), ``"grid"``
        (``grid_size^2`` cells) or a callable ``f32[H, W, C] -> i32[H, W]`` with labels in
        ``[0, nb_segments)``. Per-input labels can also be passed at call time (``segments=``).
      preservation_probability: probability that a segment is kept (0.5).
      baseline: value of removed segments (0: black).
      kernel_width: w of the similarity kernel (0.25, LIME's image default).
      ridge: lambda (1.0, the LIME package's Ridge(alpha=1)).
      batch_size: most images per model call, over inputs and coalitions together.

    Returns:
      ``explainer(params, x, y, *, key, segments=None) -> f32[N, H, W]``: each pixel holds its
      segment's coefficient.

    References:
      M. T. Ribeiro, S. Singh, C. Guestrin, "Why Should I Trust You?: Explaining the
      Predictions of Any Classifier", KDD 2016, arXiv:1602.04938.
    """
    nb_samples = check_positive_int(nb_samples, "nb_samples", where="lime", minimum=2)
    batch_size = check_batch_size(batch_size, "lime")
    if not 0.0 < preservation_probability < 1.0:
        raise ValueError(f"lime: preservation_probability must be in (0, 1), got "
                         f"{preservation_probability}")
    segmenter, d = _segmenter("lime", segmentation, grid_size, nb_segments)

    def draw(key):
        z = jax.random.bernoulli(key, preservation_probability, (nb_samples - 1, d))
        return jnp.concatenate([jnp.ones((1, d), bool), z], axis=0)

    def solve(z, s):
        norm = jnp.sqrt(jnp.maximum(z.sum(1), 1e-12) * d)
        dist = 1.0 - z.sum(1) / norm                                    # cosine distance to 1
        pi = jnp.sqrt(jnp.exp(-(dist ** 2) / kernel_width ** 2))
        zt = jnp.concatenate([z, jnp.ones((z.shape[0], 1), z.dtype)], axis=1)  # intercept last
        reg = jnp.diag(jnp.concatenate([jnp.full((d,), ridge, z.dtype), jnp.zeros((1,), z.dtype)]))
        a = zt.T @ (pi[:, None] * zt) + reg
        coef = jnp.linalg.solve(a, zt.T * pi[None, :])                 # [d + 1, P]
        return (s @ coef.T)[:, :d]

    return _surrogate_explainer("lime", model_fn, draw=draw, solve=solve, segmenter=segmenter,
                                baseline=baseline, score_fn=score_fn, batch_size=batch_size)


def kernel_shap(model_fn: ModelFn, *, nb_samples: int = 800, segmentation="slic",
                nb_segments: int = 64, grid_size: int = 8, baseline: float = 0.0,
                score_fn: ScoreFn = logit, batch_size: int | None = 64) -> Explainer:
    r"""KernelSHAP (Lundberg & Lee, 2017): Shapley values of segments by weighted regression.

    Coalition sizes ``k in [1, d-1]`` are drawn with probability proportional to the Shapley
    kernel's mass :math:`(d-1) / (k (d-k))`, then a uniform subset of that size, so every drawn
    coalition has weight 1. The empty and full coalitions are enforced exactly: the intercept is
    ``s(baseline)`` and the efficiency constraint
    :math:`\sum_j \phi_j = s(x) - s(\text{baseline})` is substituted into the least squares
    (as the ``shap`` package does), so the attributions always sum to the score difference.
    For a model that is additive over segments the Shapley values are recovered exactly.

    Args:
      model_fn, score_fn: as :func:`saliency`.
      nb_samples: P coalitions (800, Xplique's default), including the empty and full ones.
      segmentation, nb_segments, grid_size: as :func:`lime`.
      baseline: value of absent segments (0).
      batch_size: most images per model call, over inputs and coalitions together.

    Returns:
      ``explainer(params, x, y, *, key, segments=None) -> f32[N, H, W]``.

    References:
      S. M. Lundberg, S.-I. Lee, "A Unified Approach to Interpreting Model Predictions",
      NeurIPS 2017, arXiv:1705.07874.
    """
    nb_samples = check_positive_int(nb_samples, "nb_samples", where="kernel_shap", minimum=3)
    batch_size = check_batch_size(batch_size, "kernel_shap")
    segmenter, d = _segmenter("kernel_shap", segmentation, grid_size, nb_segments)
    if d < 2:
        raise ValueError("kernel_shap: the segmentation must have at least 2 segments")

    def draw(key):
        k_size, k_perm = jax.random.split(key)
        sizes = jnp.arange(1, d)
        mass = (d - 1) / (sizes * (d - sizes))
        k = jax.random.choice(k_size, sizes, (nb_samples - 2,), p=mass / mass.sum())
        ranks = jnp.argsort(jax.random.uniform(k_perm, (nb_samples - 2, d)), axis=1).argsort(1)
        z = ranks < k[:, None]
        return jnp.concatenate([jnp.ones((1, d), bool), jnp.zeros((1, d), bool), z], axis=0)

    def solve(z, s):
        fx, f0 = s[:, 0], s[:, 1]
        zs = z[2:]
        # phi_d = (fx - f0) - sum_{j<d} phi_j  =>  s - f0 - z_d (fx - f0) = sum_{j<d} (z_j - z_d) phi_j
        xr = zs[:, :-1] - zs[:, -1:]                                    # [P-2, d-1]
        target = s[:, 2:] - f0[:, None] - zs[None, :, -1] * (fx - f0)[:, None]   # [N, P-2]
        a = xr.T @ xr
        a = a + 1e-6 * jnp.trace(a) / (d - 1) * jnp.eye(d - 1, dtype=a.dtype)
        coef = jnp.linalg.solve(a, xr.T)                                # [d-1, P-2]
        head = target @ coef.T                                          # [N, d-1]
        last = (fx - f0) - head.sum(1)
        return jnp.concatenate([head, last[:, None]], axis=1)

    return _surrogate_explainer("kernel_shap", model_fn, draw=draw, solve=solve,
                                segmenter=segmenter, baseline=baseline, score_fn=score_fn,
                                batch_size=batch_size)
