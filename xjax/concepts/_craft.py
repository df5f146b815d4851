r"""CRAFT: concepts of a class as a factorization of the activations of image crops.

For a model split ``f = head_fn . features_fn`` (DESIGN: ``features_fn(params, x) ->
f32[B, h, w, F]``):

1. **Crops.** Each class image gives square ``P x P`` crops (a grid with stride ``int(0.8 P)`` as
   the reference code, or ``nb_crops`` random positions as the paper), each resized back to the
   input size.
2. **Activations** of the crops, averaged over positions: :math:`A \in \mathbb{R}^{M \times F}`.
3. **Factorization** :math:`A \approx UW` (NMF by default, any :class:`Factorization`).
4. **Importance** of each concept for an image: total Sobol indices of masks :math:`m \in [0,
   1]^R` on its codes, :math:`y(m) = h((U \odot m) W)_c` with the same mask at every position
   (Halton design, Jansen estimator, ``nb_design (R + 2)`` head calls), or Gradient x Input in
   concept space, exact when ``h`` is affine (the holistic paper's recommendation at the last
   layer).
5. **Recursion.** ``refine`` factorizes again, at an earlier layer, the crops whose code on one
   concept is above its 90th percentile.
6. **Concept attribution maps.** ``attribute`` explains the concept value
   :math:`\bar u_c(x) = \mathrm{mean}_{hw}\, \mathrm{nnls}(g(x), W)_c`, differentiated through the
   encoder by implicit differentiation: Grad-CAM at the cut by default (the paper's maps), or any
   xjax explainer factory.

The crops, activations and factorization run as jitted computations; between them one scalar
(the activations' minimum, for NMF) is read back to give a clear error.

References:
  T. Fel, A. Picard, L. Bethune, T. Boissin, D. Vigouroux, J. Colin, R. Cadene, T. Serre,
  "CRAFT: Concept Recursive Activation FacTorization for Explainability", CVPR 2023.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from xjax._internal.batching import chunked
from xjax._internal.validate import check_images, check_positive_int
from xjax.concepts._factorization import Factorization, check_activations
from xjax.concepts._nmf import nmf
from xjax.gsa import replicated_design, sobol_indices
from xjax.typing import FeaturesFn, HeadFn

__all__ = ["Craft", "CraftBank", "craft", "crop_boxes"]

_CROP_MODES = ("grid", "random")
_IMPORTANCE = ("sobol", "gradient_input", "occlusion")


class CraftBank(NamedTuple):
    """A fitted CRAFT.

    Attributes:
      bank: the factorization's bank (``bank.components: f32[R, F]``).
      crops: ``f32[M, P, P, C]`` the crops the concepts were fitted on.
      crop_source: ``i32[M]`` the image each crop came from.
      codes: ``f32[M, R]`` the crops' codes.
      activations: ``f32[M, F]`` the crops' pooled activations the bank was fitted on.
      image_size: ``i32[2]`` the (H, W) the crops are resized to before ``features_fn``.
    """

    bank: Any
    crops: Float[Array, "M P P C"]
    crop_source: Int[Array, " M"]
    codes: Float[Array, "M R"]
    activations: Float[Array, "M F"]
    image_size: Int[Array, " 2"]

    @property
    def components(self) -> Float[Array, "R F"]:
        return self.bank.components


class Craft(NamedTuple):
    """The pure functions returned by :func:`craft` (see there)."""

    fit: Callable[..., CraftBank]
    transform: Callable[..., Float[Array, "N h w R"]]
    importance: Callable[..., Float[Array, "N R"]]
    attribute: Callable[..., Float[Array, "N H W"]]
    refine: Callable[..., CraftBank]
    concept_model: Callable[[CraftBank], Callable]


def crop_boxes(height: int, width: int, patch: int, *, stride: int | None = None) -> np.ndarray:
    """Top-left corners ``i32[n, 2]`` of the VALID grid of ``patch x patch`` crops with stride
    ``int(0.8 patch)`` (the CRAFT code's grid)."""
    stride = max(1, int(0.8 * patch)) if stride is None else stride
    rows = range(0, height - patch + 1, stride)
    cols = range(0, width - patch + 1, stride)
    return np.array([(r, c) for r in rows for c in cols], np.int32).reshape(-1, 2)


def craft(features_fn: FeaturesFn, head_fn: HeadFn, *, nb_concepts: int = 25,
          factorization: Factorization | None = None, patch_size: int | None = None,
          crop_mode: str = "grid", nb_crops: int = 10, resize: str = "bilinear",
          nb_design: int = 32, sampler: str = "halton", estimator: str = "jansen",
          batch_size: int | None = 64, layer: str = "features_fn") -> Craft:
    r"""CRAFT concept extraction, importance, recursion and concept attribution maps.

    Args:
      features_fn, head_fn: the model split at a non-negative layer (just before global
        average pooling is the recommended cut).
      nb_concepts: R (the paper's 25; Xplique uses 20).
      factorization: a :class:`Factorization` of rank R; ``None`` gives
        ``nmf(nb_concepts)`` (scikit-learn's defaults, as the paper).
      patch_size: P; ``None`` gives ``round(64 / 224 * H)`` (64 px crops of 224 px images).
      crop_mode: ``"grid"`` (stride ``int(0.8 P)``, the reference code) or ``"random"``
        (``nb_crops`` uniform positions per image, the paper; needs ``key``).
      nb_crops: crops per image in random mode (the paper's 10).
      resize: ``jax.image.resize`` method to bring crops to the input size.
      nb_design: N of the Sobol design (32); ``nb_design (R + 2)`` head calls per image.
      sampler, estimator: the :mod:`xjax.gsa` design sampler (unscrambled Halton, as the
        reference code) and total-index estimator (Jansen).
      batch_size: images per model call (crops, Sobol evaluations).
      layer: a name for the cut, used in error messages.

    Returns:
      :class:`Craft` with

      - ``fit(params, x: f32[N, H, W, C], *, key=None) -> CraftBank``;
      - ``transform(params, bank, x) -> f32[N, h, w, R]``: codes at every position;
      - ``importance(params, bank, x, y, *, method="sobol", key=None) -> f32[N, R]``:
        local importances for classes ``y: i32[N]`` (mean over images = global importance);
        methods ``"sobol"`` (total indices), ``"gradient_input"``, ``"occlusion"``;
      - ``attribute(params, bank, x, concept, *, explainer=None) -> f32[N, H, W]``: concept
        attribution maps of ``concept`` (int or ``i32[N]``): Grad-CAM at the cut through the
        implicit-differentiation path, or ``explainer(model_fn)(params, x, concept)`` for any
        xjax explainer factory, ``model_fn`` giving the mean concept values ``f32[B, R]``;
      - ``refine(params, bank, concept, *, features_fn, nb_concepts, percentile=90,
        factorization=None, key=None) -> CraftBank``: sub-concepts at an earlier layer;
      - ``concept_model(bank) -> model_fn(params, x) -> f32[B, R]``.

    Raises:
      ValueError: bad hyperparameters here; at ``fit``: too few crops, more concepts than the
        activation width, negative activations with NMF (naming ``layer``).
    """
    nb_concepts = check_positive_int(nb_concepts, "nb_concepts", where="craft")
    if crop_mode not in _CROP_MODES:
        raise ValueError(f"craft: crop_mode must be one of {_CROP_MODES}, got {crop_mode!r}")
    check_positive_int(nb_crops, "nb_crops", where="craft")
    check_positive_int(nb_design, "nb_design", where="craft")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", where="craft")
    if patch_size is not None:
        check_positive_int(patch_size, "patch_size", where="craft", minimum=2)
    if not (callable(features_fn) and callable(head_fn)):
        raise TypeError("craft: features_fn and head_fn must be callables (a Model's "
                        "features_fn and head_fn)")
    fac = nmf(nb_concepts) if factorization is None else factorization
    if not isinstance(fac, Factorization):
        raise TypeError(f"craft: factorization must be an xjax.concepts Factorization (e.g. "
                        f"nmf({nb_concepts})), got {type(fac).__name__}")

    def _patch(x):
        p = patch_size or max(2, round(64 / 224 * x.shape[1]))
        if p > min(x.shape[1:3]):
            raise ValueError(f"craft: patch_size={p} exceeds the image size {x.shape[1:3]}")
        return p

    def _crops(x, key, p):
        n, hh, ww, c = x.shape
        if crop_mode == "grid":
            boxes = jnp.asarray(crop_boxes(hh, ww, p))
            boxes = jnp.broadcast_to(boxes, (n,) + boxes.shape)
        else:
            kr, kc = jax.random.split(key)
            boxes = jnp.stack([jax.random.randint(kr, (n, nb_crops), 0, hh - p + 1),
                               jax.random.randint(kc, (n, nb_crops), 0, ww - p + 1)], -1)
        k = boxes.shape[1]
        cut = lambda img, b: jax.lax.dynamic_slice(img, (b[0], b[1], 0), (p, p, c))
        crops = jax.vmap(lambda img, bs: jax.vmap(lambda b: cut(img, b))(bs))(x, boxes)
        return crops.reshape(n * k, p, p, c), jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)

    def _pooled(fn, params, crops, shape):
        def one(cb):
            up = jax.image.resize(cb, (cb.shape[0],) + shape, resize)
            return fn(params, up).astype(jnp.float32).mean((1, 2))
        return chunked(one, batch_size)(crops)

    _crop_acts = jax.jit(lambda params, x, key, p: _with_acts(params, x, key, p),
                         static_argnums=3)

    def _with_acts(params, x, key, p):
        crops, src = _crops(x, key, p)
        return crops, src, _pooled(features_fn, params, crops, x.shape[1:])

    def _factorize(fac_, a, key, where, rank):
        check_activations(a, rank, where, nonnegative=fac_.nonnegative, layer=f"{layer} outputs")
        bank = fac_.fit(a, key=key)
        return bank, bank.codes if hasattr(bank, "codes") else fac_.transform(bank, a)

    def fit(params, x: Float[Array, "N H W C"], *, key: jax.Array | None = None) -> CraftBank:
        check_images(x, "x", where="craft.fit", nonempty=True, finite=True,
                     unit_range=True)
        if crop_mode == "random" and key is None:
            raise ValueError("craft.fit: crop_mode='random' needs key=jax.random.key(seed)")
        key = jax.random.key(0) if key is None else key
        k_crop, k_fit = jax.random.split(key)
        p = _patch(x)
        crops, src, acts = _crop_acts(params, x, k_crop, p)
        if acts.shape[0] < nb_concepts:
            raise ValueError(f"craft.fit: {acts.shape[0]} crops are too few for "
                             f"{nb_concepts} concepts; give more images or more crops per image")
        bank, codes = _factorize(fac, acts, k_fit, "craft.fit", nb_concepts)
        return CraftBank(bank, crops, src, codes, acts, jnp.asarray(x.shape[1:3], jnp.int32))

    def _codes(bank_, a):
        return fac.transform(bank_, a)

    def transform(params, bank: CraftBank, x: Float[Array, "N H W C"]) -> Float[Array, "N h w R"]:
        check_images(x, "x", where="craft.transform", nonempty=True, finite=True,
                     unit_range=True)
        return _transform(params, bank, x)

    @jax.jit
    def _transform(params, bank, x):
        return chunked(lambda xb: _codes(bank.bank, features_fn(params, xb)), batch_size)(x)

    def concept_model(bank: CraftBank):
        """``model_fn(params, x) -> f32[B, R]``: mean codes over positions."""
        def model_fn(params, x):
            return _codes(bank.bank, features_fn(params, x).astype(jnp.float32)).mean((1, 2))
        return model_fn

    def _head_of_codes(params, bank, u, y):
        """y-th logit of the head applied to the reconstruction of codes ``u: [..., h, w, R]``."""
        a = fac.inverse(bank.bank, u)
        out = head_fn(params, a.reshape((-1,) + a.shape[-3:]))
        return jnp.take_along_axis(out, y.reshape(-1, 1), axis=1)[:, 0]

    def _sobol_one(params, bank, u, yi, design):
        """Total indices of one image's codes ``u: [h, w, R]`` over masks ``design: [P, R]``."""
        def values(m):                                                   # [b, R] -> [b]
            return _head_of_codes(params, bank, u[None] * m[:, None, None, :],
                                  jnp.broadcast_to(yi, (m.shape[0],)))
        v = chunked(values, batch_size)(design)
        return sobol_indices(v, nb_design, nb_concepts, estimator=estimator).total

    def _importance(params, bank, x, y, design, method):
        u = _transform(params, bank, x)                                 # [N, h, w, R]
        if method == "sobol":
            return jax.lax.map(lambda t: _sobol_one(params, bank, t[0], t[1], design), (u, y))
        if method == "gradient_input":
            def gi(ub, yb):
                g = jax.grad(lambda v: _head_of_codes(params, bank, v, yb).sum())(ub)
                return (ub * g).sum((1, 2))
            return chunked(gi, batch_size)(u, y)

        def occ(ub, yb):                                                # y(u) - y(u, u_i = 0)
            base = _head_of_codes(params, bank, ub, yb)
            keep = 1.0 - jnp.eye(nb_concepts, dtype=ub.dtype)             # row i drops concept i
            drop = jax.vmap(lambda k: _head_of_codes(
                params, bank, ub * k[None, None, None], yb))(keep)
            return base[None] - drop
        return chunked(lambda ub, yb: occ(ub, yb).T, batch_size)(u, y)

    _importance = jax.jit(_importance, static_argnames="method")

    def importance(params, bank: CraftBank, x: Float[Array, "N H W C"], y, *,
                   method: str = "sobol", key: jax.Array | None = None) -> Float[Array, "N R"]:
        check_images(x, "x", where="craft.importance", nonempty=True, finite=True,
                     unit_range=True)
        if method not in _IMPORTANCE:
            raise ValueError(f"craft.importance: method must be one of {_IMPORTANCE}, got "
                             f"{method!r}")
        y = jnp.broadcast_to(jnp.asarray(y, jnp.int32), (x.shape[0],))
        design = replicated_design(nb_design, nb_concepts, sampler=sampler, key=key)
        return _importance(params, bank, x, y, design, method)

    def attribute(params, bank: CraftBank, x: Float[Array, "N H W C"], concept, *,
                  explainer: Callable | None = None) -> Float[Array, "N H W"]:
        check_images(x, "x", where="craft.attribute", nonempty=True, finite=True,
                     unit_range=True)
        c = jnp.broadcast_to(jnp.asarray(concept, jnp.int32), (x.shape[0],))
        if explainer is None:
            return _concept_grad_cam(params, bank, x, c)
        return explainer(concept_model(bank))(params, x, c)

    @jax.jit
    def _concept_grad_cam(params, bank, x, c):
        # the bank travels with the parameters, so one compiled program serves every bank of
        # the same shapes (a Lens atlas's classes)
        from xjax.attributions import grad_cam

        feats = lambda pb, z: features_fn(pb[0], z)
        head = lambda pb, a: _codes(pb[1].bank, a.astype(jnp.float32)).mean((1, 2))
        return grad_cam(feats, head, batch_size=batch_size)((params, bank), x, c)

    def refine(params, bank: CraftBank, concept: int, *, features_fn: FeaturesFn,
               nb_concepts: int, percentile: float = 90.0,
               factorization: Factorization | None = None,
               key: jax.Array | None = None) -> CraftBank:
        if not 0 <= concept < bank.codes.shape[1]:
            raise ValueError(f"craft.refine: concept must be in [0, {bank.codes.shape[1]}), got "
                             f"{concept}")
        col = np.asarray(bank.codes[:, concept])
        keep = np.flatnonzero(col >= np.percentile(col, percentile))
        if keep.size < nb_concepts:
            raise ValueError(f"craft.refine: only {keep.size} crops are above the {percentile}th "
                             f"percentile of concept {concept}, too few for {nb_concepts} "
                             f"sub-concepts; lower percentile or fit on more images")
        crops = bank.crops[keep]
        sub = nmf(nb_concepts) if factorization is None else factorization
        shape = tuple(int(v) for v in np.asarray(bank.image_size)) + bank.crops.shape[-1:]
        acts = jax.jit(lambda p_, c_: _pooled(features_fn, p_, c_, shape))(params, crops)
        sub_bank, codes = _factorize(sub, acts, jax.random.key(0) if key is None else key,
                                     "craft.refine", nb_concepts)
        return CraftBank(sub_bank, crops, bank.crop_source[keep], codes, acts, bank.image_size)

    return Craft(fit, transform, importance, attribute, refine, concept_model)
