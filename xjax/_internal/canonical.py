"""Convolutions in canonical dimension order, for the bodies of block loops.

XLA:CPU runs a convolution through its fast paths (Eigen, XNNPACK/YNNPACK) only when the input is
``N, spatial..., C``, the kernel ``spatial..., I, O`` and the output ``N, spatial..., C``. Its
``ConvCanonicalization`` pass rewrites other convolutions into that order by inserting transposes,
but it visits the entry computation only (``xla/service/cpu/conv_canonicalization.cc``, openxla/xla
at 16569562, loops over ``module->entry_computation()``). The input gradient of a convolution is
itself a convolution whose kernel is the reversed kernel with its two feature dimensions swapped
(``spatial..., O, I``), so inside a ``lax.scan`` or ``lax.map`` body the backward pass of every
conv net falls to XLA:CPU's naive loop emitter.

Measured on the 2-core CPU of this project (``benchmarks/loop_convs.py``, results in
``benchmarks/results/loop_convs_cpu.json``): the input gradient of rows cut into two blocks of a
``lax.scan`` took 2.43x the time of one call on all the rows on the 32x32 small CNN and on
ResNet-18 at 224x224; with this rewrite the scan takes 0.98x of the one call. The results
agree to float rounding (the fast and the naive kernels sum in different orders).

:func:`canonical_convs` does that rewrite on the jaxpr of a block body before XLA sees it: each
non-canonical ``conv_general_dilated`` becomes transposes around a canonical one (the same
function, the same numbers). Call primitives (``jit``, ``closed_call``, ``remat``) are walked in
place; ``custom_jvp_call`` / ``custom_vjp_call`` are bound as they are, so their rules still apply
when a user differentiates through an explainer; loops and conditionals inside a model are bound
as they are too (their convolutions are not rewritten).
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax

from xjax._internal.jaxpr import bind, walk

__all__ = ["canonical_convs", "canonical_dimension_numbers"]


def canonical_dimension_numbers(spatial: int) -> lax.ConvDimensionNumbers:
    """``NH..WC`` input, ``H..WIO`` kernel, ``NH..WC`` output for ``spatial`` spatial dimensions,
    as ``lax.ConvDimensionNumbers`` (specs list batch/out-feature, feature/in-feature, spatial)."""
    k = spatial
    return lax.ConvDimensionNumbers(lhs_spec=(0, k + 1, *range(1, k + 1)),
                                    rhs_spec=(k + 1, k, *range(k)),
                                    out_spec=(0, k + 1, *range(1, k + 1)))


def _conv(eqn, invals):
    dn = eqn.params["dimension_numbers"]
    canonical = canonical_dimension_numbers(len(dn.lhs_spec) - 2)
    if tuple(dn) == tuple(canonical):
        return None                                  # bound again as it is
    lhs, rhs = invals
    # Each spec is (batch or out-feature, feature or in-feature, spatial...); the spatial order
    # is kept, so strides, padding and dilations (given in spatial order) stay valid.
    lhs_perm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
    rhs_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
    out_perm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
    out = lax.conv_general_dilated_p.bind(lax.transpose(lhs, lhs_perm), lax.transpose(rhs, rhs_perm),
                                          **{**eqn.params, "dimension_numbers": canonical})
    return [lax.transpose(out, tuple(int(i) for i in np.argsort(out_perm)))]


def _as_is(eqn, invals):
    return bind(eqn.primitive, eqn.params, invals)


# primitive name -> rewrite (outputs as a list, or None for the walker's default)
_RULES: dict[str, Callable] = {
    "conv_general_dilated": _conv,
    "custom_jvp_call": _as_is,
    "custom_vjp_call": _as_is,
    "custom_vjp_call_jaxpr": _as_is,
}


def _visit(eqn, invals):
    rule = _RULES.get(eqn.primitive.name)
    return None if rule is None else rule(eqn, invals)


def canonical_convs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every convolution it traces in canonical dimension order (see the module).

    The returned function traces ``fn`` to a jaxpr on each call and evaluates the rewritten jaxpr
    in the caller's trace, so it composes with ``jit``, ``vmap``, ``grad`` and loops; the outputs
    equal ``fn``'s up to the rounding of a different convolution kernel (transposes move
    data without arithmetic).
    """
    def run(*args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = walk(closed.jaxpr, closed.consts, jax.tree.leaves(args), _visit)
        return jax.tree.unflatten(jax.tree.structure(shape), out)

    return run
