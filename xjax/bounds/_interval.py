"""The data every bound method shares: intervals, the tape of box-dependent equations, and the
few array helpers that keep infinite endpoints and zero coefficients from making NaNs."""

from typing import Any, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["Eqn", "Interval", "Node", "Tape", "concretize", "endpoints", "is_node", "mul0",
           "products", "sum_tail"]


class Interval(NamedTuple):
    """Elementwise bounds: ``lower <= f(x) <= upper`` for every x in the box."""

    lower: Array
    upper: Array


class Node:
    """A value that depends on the input box: its interval and its position on the tape."""

    __slots__ = ("lo", "hi", "index", "shape", "err")

    def __init__(self, lo, hi, index, err=None):
        # err (sound_float): a bound of the float rounding committed by the equation making this
        # value, already included in [lo, hi]; backward passes charge |coefficient| * err
        self.lo, self.hi, self.index, self.shape, self.err = lo, hi, index, lo.shape, err


class Eqn(NamedTuple):
    """One box-dependent equation on the tape (the traced one, or a lowering's synthetic one)."""

    prim: Any
    params: dict
    inputs: list          # Node or concrete array
    outputs: list         # Node


class Tape:
    """The box-dependent equations in evaluation order, and every node they made."""

    def __init__(self, sound: bool = False):
        self.eqns: list[Eqn] = []
        self.nodes: list[Node] = []
        self.producer: dict[int, Eqn] = {}    # node index -> the equation that made it
        self.sound = sound            # pad every float value by its rounding error bound

    def record(self, eqn: Eqn) -> None:
        self.eqns.append(eqn)
        for o in eqn.outputs:
            self.producer[o.index] = eqn

    def prune(self, out: Node) -> None:
        """Drop the equations whose outputs ``out`` does not depend on (a lowering that rebuilt
        a value from its inputs leaves the old equations dead; CROWN would otherwise bound
        their inputs too)."""
        live, keep = {out.index}, []
        for eqn in reversed(self.eqns):
            if any(o.index in live for o in eqn.outputs):
                keep.append(eqn)
                live.update(v.index for v in eqn.inputs if is_node(v))
        self.eqns = keep[::-1]

    def node(self, lo, hi, err=None) -> Node:
        n = Node(lo, hi, len(self.nodes), err)
        self.nodes.append(n)
        return n


def is_node(v) -> bool:
    return isinstance(v, Node)


def endpoints(v):
    """``(lower, upper)`` of a node, ``(v, v)`` of a constant."""
    return (v.lo, v.hi) if is_node(v) else (v, v)


def mul0(a, b):
    """``a * b`` with 0 * inf = 0 (a zero coefficient ignores an unbounded term); the gradient
    is finite wherever a is 0."""
    return a * jnp.where(a == 0, 0.0, b)


def products(a_lo, a_hi, b_lo, b_hi):
    """Interval product: the extreme endpoint products (0 * inf stands for 0: the other endpoint
    products already carry the infinite side)."""
    c = jnp.stack(jnp.broadcast_arrays(a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi))
    c = jnp.where(jnp.isnan(c), 0.0, c)
    return c.min(0), c.max(0)


def concretize(lam, lo, hi):
    """Lower bound of ``sum(lam * y)`` over y in [lo, hi] per spec row and example: ``[S, B]``."""
    p = jnp.where(lam > 0, mul0(lam, lo), jnp.where(lam < 0, mul0(lam, hi), 0.0))
    return p.reshape(p.shape[0], p.shape[1], -1).sum(-1)


def sum_tail(a, b=1.0):
    """``sum over all but the first two axes of a * b`` (a: [S, B, ...], b broadcast)."""
    p = jnp.broadcast_to(a * b, jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b)))
    return p.reshape(p.shape[0], p.shape[1], -1).sum(-1)
