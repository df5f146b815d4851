"""Jaxpr plumbing shared by every interpreter in xjax (bounds, guided backprop / DeconvNet).

Two things must be done the same way by every walker, or the walkers disagree on the same model:

* binding an equation again: the parameters stored in a jaxpr equation are not always the
  parameters ``bind`` takes (call primitives store a jaxpr where ``bind`` expects a function, and
  ``Primitive.get_bind_params`` converts them);
* inlining call primitives (``jit``/``pjit``, ``closed_call``, ``checkpoint``/``remat``,
  ``custom_jvp_call``, ``custom_vjp_call``): their body is a closed jaxpr to walk in place.
"""

from typing import Any

from jax.extend import core as jcore

__all__ = ["CALL_PRIMITIVES", "bind", "call_body", "walk"]

# primitive name -> parameter holding the body, in the order the versions of JAX have used
CALL_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "pjit": ("jaxpr",),
    "jit": ("jaxpr",),
    "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",),
    "remat": ("jaxpr",),
    "remat2": ("jaxpr",),
    "checkpoint": ("jaxpr",),
    "custom_jvp_call": ("call_jaxpr",),
    "custom_vjp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call_jaxpr": ("fun_jaxpr", "call_jaxpr"),
}


def bind(prim, params: dict, args) -> list:
    """Apply ``prim`` to ``args`` with an equation's stored ``params``; always a list of outputs."""
    bind_params = prim.get_bind_params(params)
    subfuns: Any = ()
    if isinstance(bind_params, tuple):           # (subfuns, params) on the JAX versions we support
        subfuns, bind_params = bind_params
    out = prim.bind(*subfuns, *args, **bind_params)
    return list(out) if prim.multiple_results else [out]


def call_body(prim, params: dict) -> jcore.ClosedJaxpr | None:
    """The body of a call primitive as a closed jaxpr, or ``None`` when ``prim`` is no call."""
    for key in CALL_PRIMITIVES.get(prim.name, ()):
        sub = params.get(key)
        if isinstance(sub, jcore.ClosedJaxpr):
            return sub
        if isinstance(sub, jcore.Jaxpr):
            return jcore.ClosedJaxpr(sub, ())
    return None


def walk(jaxpr: jcore.Jaxpr, consts, args, visit) -> list:
    """Evaluate ``jaxpr`` on ``args``, letting ``visit`` take over any equation.

    ``visit(eqn, invals)`` returns the equation's outputs (a list), or ``None`` for the default:
    a call primitive's body is walked in place (with the same ``visit``), any other primitive is
    bound again. Literals are read as their values and dropped outputs are skipped, the same way
    for every interpreter built on this walker (certified bounds, guided backprop / DeconvNet).
    """
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outs = visit(eqn, invals)
        if outs is None:
            body = call_body(eqn.primitive, eqn.params)
            outs = (walk(body.jaxpr, body.consts, invals, visit) if body is not None
                    else bind(eqn.primitive, eqn.params, invals))
        for var, val in zip(eqn.outvars, outs, strict=True):
            if not isinstance(var, jcore.DropVar):
                env[var] = val
    return [read(v) for v in jaxpr.outvars]
