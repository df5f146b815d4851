r"""The feature-visualization loop: one ``lax.scan`` over steps, one image per objective
combination under ``vmap``.

Each step renders the image with ``jax.vjp`` of the parameterization, takes the gradient of
the objective (averaged over the transformed copies) with respect to the image, pulls it back to
the parameters and applies the optimizer (maximization). The absolute image gradients are summed
over the steps: MACO's transparency map (free, since the image gradient is computed anyway).

The loop is one jitted program keyed by what shapes it (the model function, the objective's
terms without their arguments, the parameterization, the transforms, the optimizer, the step
count); the model's parameters, the objective's arguments (indices, directions) and the key are
its inputs. A second call with new directions of the same shapes (the next class of a Lens atlas)
compiles nothing, as long as the callables are the same objects: build the parameterization and
the transforms once and pass them again. The default optimizer and transforms are cached.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from xjax.featviz._objectives import Objective
from xjax.featviz._parameterizations import Parameterization
from xjax.featviz._transforms import Transform, lucid, random_crops

__all__ = ["OptimizeResult", "concept_objective", "optimize", "transparency_alpha"]


class OptimizeResult(NamedTuple):
    """``images: f32[K, H, W, C]`` (one per objective combination), ``transparency:
    f32[K, H, W, C]`` (accumulated ``|d objective / d image|``), ``scores: f32[steps, K]`` (the
    objective on the transformed copies at each step) and the final ``params``."""

    images: Float[Array, "K H W C"]
    transparency: Float[Array, "K H W C"]
    scores: Float[Array, "steps K"]
    params: Any


@functools.cache
def _default_optimizer(name: str) -> optax.GradientTransformation:
    return optax.nadam(1.0) if name == "maco" else optax.adam(0.05)


@functools.cache
def _default_transforms(name: str, size: tuple[int, int]) -> Transform:
    return random_crops(size) if name == "maco" else lucid(size)


def optimize(model_fn: Callable, params, objective: Objective, parameterization: Parameterization,
             *, steps: int = 256, optimizer: optax.GradientTransformation | None = None,
             transforms: Transform | None = None, input_size: tuple[int, int] | None = None,
             key: jax.Array) -> OptimizeResult:
    """Optimize one image per combination of ``objective`` (see :class:`Objective`).

    Args:
      model_fn: the model, used by terms without their own layer (e.g. ``logit``).
      params: its parameters.
      objective: what to maximize.
      parameterization: :func:`~xjax.featviz.maco` or :func:`~xjax.featviz.fourier`.
      steps: optimization steps (MACO and Xplique: 256).
      optimizer: any optax transformation; default NAdam(1.0) for MACO (the paper) and
        Adam(0.05) for Fourier (Lucid/Xplique).
      transforms: a :mod:`~xjax.featviz` transform from the image to the model's input batch;
        default MACO's 32 shrinking random crops, or Lucid's standard transforms for Fourier.
      input_size: the model input ``(h, w)`` the default transforms resize to (default: the
        image size).
      key: initialization and the transforms' randomness.

    Returns:
      :class:`OptimizeResult`.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"optimize: objective must be an xjax.featviz Objective, got "
                        f"{type(objective).__name__}")
    if not isinstance(parameterization, Parameterization):
        raise TypeError("optimize: parameterization must come from xjax.featviz.maco or fourier")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"optimize: steps must be a positive int, got {steps!r}")
    if key is None:
        raise ValueError("optimize: key=jax.random.key(seed) is required (initialization and "
                         "transforms)")
    size = tuple(parameterization.shape[:2]) if input_size is None else tuple(input_size)
    transforms = _default_transforms(parameterization.name, size) if transforms is None \
        else transforms
    opt = _default_optimizer(parameterization.name) if optimizer is None else optimizer
    # what the model sees: the transforms' output on a rendered image (abstractly)
    seen = jax.eval_shape(lambda k: transforms(
        k, parameterization.render(parameterization.init(k))[None], jnp.float32(0.0)), key)
    objective.check(model_fn, params, jax.ShapeDtypeStruct((1,) + tuple(seen.shape[1:]),
                                                           seen.dtype))
    args = [jnp.asarray(a) for a in objective.combinations()]
    shape = Objective(tuple(dataclasses.replace(t, arg=None) for t in objective.terms))
    return _run(params, args, key, model_fn=model_fn, objective=shape,
                parameterization=parameterization, transforms=transforms, optimizer=opt,
                steps=steps)


@functools.partial(jax.jit, static_argnames=("model_fn", "objective", "parameterization",
                                             "transforms", "optimizer", "steps"))
def _run(params, args, key, *, model_fn, objective, parameterization, transforms, optimizer,
         steps) -> OptimizeResult:
    """The loop; ``objective`` carries the terms without their arguments (``args``)."""
    opt = optimizer
    k = args[0].shape[0]
    k_init, k_steps = jax.random.split(key)
    init = jax.vmap(parameterization.init)(jax.random.split(k_init, k))
    with jax.numpy_dtype_promotion("standard"):   # optax mixes Python floats and int counters
        state = jax.vmap(opt.init)(init)

    def one_step(p, s, alpha, arg, skey, progress):
        x, pullback = jax.vjp(parameterization.render, p)

        def value(img):
            batch = transforms(skey, img[None], progress)
            return objective.score(model_fn, params, batch, arg).mean()

        val, gx = jax.value_and_grad(value)(x)
        (gp,) = pullback(gx)
        with jax.numpy_dtype_promotion("standard"):
            updates, s = opt.update(jax.tree.map(jnp.negative, gp), s, p)
            p = optax.apply_updates(p, updates)
        return p, s, alpha + jnp.abs(gx), val

    h, w, c = parameterization.shape

    def step(carry, inp):
        p, s, alpha = carry
        i, skey = inp
        progress = i.astype(jnp.float32) / max(steps - 1, 1)
        p, s, alpha, val = jax.vmap(one_step, in_axes=(0, 0, 0, 0, None, None))(
            p, s, alpha, args, skey, progress)
        return (p, s, alpha), val

    alpha0 = jnp.zeros((k, h, w, c), jnp.float32)
    (p, _, alpha), scores = jax.lax.scan(
        step, (init, state, alpha0), (jnp.arange(steps), jax.random.split(k_steps, steps)))
    return OptimizeResult(jax.vmap(parameterization.render)(p), alpha, scores, p)


def transparency_alpha(transparency: Float[Array, "H W C"], *, percentile: float = 80.0
                       ) -> Float[np.ndarray, "H W"]:
    """MACO's display alpha: channel mean, clipped at its ``percentile``, divided by the max."""
    a = np.asarray(transparency).mean(-1)
    a = np.minimum(a, np.percentile(a, percentile))
    return a / max(a.max(), 1e-12)


def concept_objective(bank, concepts, *, features_fn: Callable, cossim_pow: float = 2.0
                      ) -> Objective:
    """A CRAFT concept (or a batch of concept indices) as a direction objective in the
    spatially averaged ``features_fn`` activations (the CRAFT notebook's MACO target)."""
    from xjax.featviz._objectives import direction

    comps = np.asarray(bank.components)
    idx = np.atleast_1d(np.asarray(concepts))
    return direction(comps[idx], layer=features_fn, cossim_pow=cossim_pow)
