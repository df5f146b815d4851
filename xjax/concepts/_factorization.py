"""The dictionary-learning protocol shared by every concept extractor.

Every extractor solves :math:`(U^*, W^*) = \\arg\\min \\tfrac12 \\|A - U W\\|_F^2` under its own
constraint (Fel, Boutin et al., "A Holistic Approach to Unifying Automatic Concept Extraction and
Concept Importance Estimation", NeurIPS 2023). The bank ``W`` holds one concept per row
(``components: f32[R, F]``) and the codes ``U: f32[M, R]`` one row per activation vector.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["Factorization", "check_activations", "check_rank"]


class Factorization(NamedTuple):
    """A concept extractor as pure functions.

    Attributes:
      fit: ``fit(a: f32[M, F], *, key=None) -> bank``; the bank is a frozen pytree (a NamedTuple)
        with ``bank.components: f32[R, F]``.
      transform: ``transform(bank, a: f32[..., F]) -> f32[..., R]``, the codes of new activations
        with the bank fixed (leading axes are kept, so spatial maps ``f32[N, h, w, F]`` work).
      inverse: ``inverse(bank, u: f32[..., R]) -> f32[..., F]``, the reconstruction from codes.
      nonnegative: whether ``fit`` needs non-negative activations (NMF).
      name: the method's name, for reports.
    """

    fit: Callable[..., Any]
    transform: Callable[..., Float[Array, "... R"]]
    inverse: Callable[..., Float[Array, "... F"]]
    nonnegative: bool
    name: str


def check_rank(rank, where: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"{where}: rank must be a positive int, got {rank!r}")
    return int(rank)


def check_activations(a, rank: int, where: str, *, nonnegative: bool = False,
                      layer: str = "the activations") -> None:
    """Eager checks on a matrix of activations ``f32[M, F]`` (tracers: shape checks only)."""
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{where}: activations must be a matrix f32[M, F] (one row per crop or "
                         f"position), got shape {shape}; pool or reshape feature maps first")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{where}: activations must be floating point, got {a.dtype}")
    m, f = shape
    if rank > f:
        raise ValueError(f"{where}: rank={rank} concepts exceed the activation width F={f}; "
                         f"ask for at most {f} concepts or cut the model at a wider layer")
    if m < rank:
        raise ValueError(f"{where}: {m} activation rows are too few for rank={rank} concepts; "
                         f"give at least {rank} rows (more images or more crops per image)")
    if nonnegative and not isinstance(a, jax.core.Tracer):
        lo = float(jnp.min(a))
        if lo < 0:
            raise ValueError(f"{where}: NMF needs non-negative activations, but {layer} reach "
                             f"{lo:.4g}; cut the model right after a ReLU (or another non-negative "
                             f"activation), or use a factorization that allows signs (pca, ica, "
                             f"sparse_coding, topk_sae)")
