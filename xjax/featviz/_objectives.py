r"""Feature-visualization objectives, composable with ``+`` and scalar ``*``.

Each factory returns an :class:`Objective`, an immutable sum of weighted terms. A term reads a
layer, ``layer(params, x) -> f32[B, ...]`` (``None``: the ``model_fn`` given to
:func:`~xjax.featviz.optimize`), and reduces it per image:

==============  =====================================================================
``neuron``      ``T[h/2, w/2, c]``, the centre position of channel c (NHWC maps)
``channel``     ``mean_hw T[..., c]``
``layer``       ``mean(T^2)`` (DeepDream)
``direction``   :math:`\langle T, v\rangle \max(\cos(T, v), 0.1)^p` on the spatially averaged
                ``T`` (Lucid/Xplique's dot x cos^p, p = 2; CAVs and CRAFT concepts)
``logit``       ``T[c]`` of a ``[B, K]`` output (pre-softmax)
==============  =====================================================================

An index (or direction) argument may be a batch: ``logit(jnp.arange(5))`` is five objectives.
A sum of batched terms forms the Cartesian product of their batches (Xplique's layout), and
:func:`~xjax.featviz.optimize` optimizes one image per combination, maximizing
:math:`\sum_i m_i f_i` (each term once, weighted by its multiplier).
"""

import dataclasses
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["Objective", "channel", "direction", "layer", "logit", "neuron"]

_KINDS = ("neuron", "channel", "layer", "direction", "logit")


@dataclasses.dataclass(frozen=True)
class _Term:
    kind: str
    layer: Callable | None
    arg: np.ndarray            # [K_i, ...] one row per objective of the batch
    weight: float
    cossim_pow: float = 2.0


@dataclasses.dataclass(frozen=True)
class Objective:
    """An immutable weighted sum of terms (see the module docstring)."""

    terms: tuple[_Term, ...]

    def __add__(self, other: "Objective") -> "Objective":
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self.terms + other.terms)

    def __mul__(self, scalar: float) -> "Objective":
        if not isinstance(scalar, (int, float)) or isinstance(scalar, bool):
            return NotImplemented
        return Objective(tuple(dataclasses.replace(t, weight=t.weight * scalar)
                               for t in self.terms))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    @property
    def batch(self) -> int:
        """Number of combinations (images optimized at once)."""
        return int(np.prod([t.arg.shape[0] for t in self.terms]))

    def combinations(self) -> list[np.ndarray]:
        """Per term, its argument for every combination: ``[batch, ...]`` arrays."""
        idx = np.array(list(itertools.product(*[range(t.arg.shape[0]) for t in self.terms])))
        return [t.arg[idx[:, i]] for i, t in enumerate(self.terms)]

    def check(self, model_fn: Callable, params, image: jax.ShapeDtypeStruct) -> None:
        """Refuse, before anything is traced, a term whose index or direction does not fit its
        layer's output on ``image`` (one abstract evaluation per layer): a logit 99 of a
        10-class model, a channel past the layer's width, a direction of the wrong width."""
        for term in self.terms:
            fn = model_fn if term.layer is None else term.layer
            out = jax.eval_shape(fn, params, image)
            width = out.shape[-1]
            if term.kind in ("logit", "neuron", "channel") and int(term.arg.max()) >= width:
                raise ValueError(f"{term.kind} objective: index {int(term.arg.max())} is out of "
                                 f"range for a layer of {width} outputs (last axis of "
                                 f"{out.shape})")
            if term.kind == "direction":
                v = out.shape[-1] if len(out.shape) == 4 else int(np.prod(out.shape[1:]))
                if term.arg.shape[-1] != v:
                    raise ValueError(f"direction objective: vectors of width "
                                     f"{term.arg.shape[-1]} for a layer of {v} features "
                                     f"(output {out.shape})")

    def score(self, model_fn: Callable, params, x: Float[Array, "B H W C"], args) -> Float[Array, " B"]:
        """Sum of weighted terms for images ``x`` with one combination's ``args`` (one per
        term); layers shared by several terms are evaluated once."""
        cache: dict[int, Array] = {}
        total = jnp.zeros((x.shape[0],), jnp.float32)
        for term, arg in zip(self.terms, args, strict=True):
            fn = model_fn if term.layer is None else term.layer
            if id(fn) not in cache:
                cache[id(fn)] = fn(params, x).astype(jnp.float32)
            total = total + term.weight * _reduce(term, cache[id(fn)], arg)
        return total


def _reduce(term, t, arg):
    if term.kind == "logit":
        return t[:, arg]
    if term.kind == "layer":
        return jnp.mean(t.reshape(t.shape[0], -1) ** 2, axis=1)
    if t.ndim != 4 and term.kind in ("neuron", "channel"):
        raise ValueError(f"{term.kind} objective: the layer must give f32[B, h, w, F] maps, got "
                         f"shape {t.shape}")
    if term.kind == "neuron":
        return t[:, t.shape[1] // 2, t.shape[2] // 2, arg]
    if term.kind == "channel":
        return t[..., arg].mean((1, 2))
    v = t.mean((1, 2)) if t.ndim == 4 else t.reshape(t.shape[0], -1)
    dot = v @ arg
    cos = dot / jnp.maximum(jnp.linalg.norm(v, axis=1) * jnp.linalg.norm(arg), 1e-12)
    return dot * jnp.maximum(cos, 0.1) ** term.cossim_pow


def _indices(index, name):
    a = np.atleast_1d(np.asarray(index))
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: the index must be an int or a 1-D integer array, got {index!r}")
    if a.size == 0 or a.min() < 0:
        raise ValueError(f"{name}: the index must be non-negative (and at least one), got "
                         f"{index!r}")
    return a.astype(np.int32)


def logit(index, *, layer: Callable | None = None) -> Objective:
    """The pre-softmax output ``index`` (an int or a batch ``i32[K]``) of ``layer`` (default:
    the model)."""
    return Objective((_Term("logit", layer, _indices(index, "logit"), 1.0),))


def neuron(index, *, layer: Callable) -> Objective:
    """Channel ``index`` at the centre position of ``layer``'s maps."""
    return Objective((_Term("neuron", layer, _indices(index, "neuron"), 1.0),))


def channel(index, *, layer: Callable) -> Objective:
    """Spatial mean of channel ``index`` of ``layer``'s maps."""
    return Objective((_Term("channel", layer, _indices(index, "channel"), 1.0),))


def layer(fn: Callable) -> Objective:
    """DeepDream: ``mean(T^2)`` of the whole layer ``fn``."""
    return Objective((_Term("layer", fn, np.zeros((1,), np.int32), 1.0),))


def direction(vectors: Float[np.ndarray, "K F"], *, layer: Callable,
              cossim_pow: float = 2.0) -> Objective:
    """Lucid's dot x cos^p towards ``vectors`` (``f32[F]`` or a batch ``f32[K, F]``) in the
    spatially averaged ``layer`` (a CAV, or a CRAFT concept: ``bank.components[c]``)."""
    v = np.asarray(vectors, np.float32)
    v = v[None] if v.ndim == 1 else v
    if v.ndim != 2:
        raise ValueError(f"direction: vectors must be f32[F] or f32[K, F], got shape {v.shape}")
    return Objective((_Term("direction", layer, v, 1.0, cossim_pow),))
