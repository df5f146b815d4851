"""Mixed precision policies (jmp) shared by training and model calls."""

import jmp


def policy(precision: "str | jmp.Policy" = "float32") -> jmp.Policy:
    """A jmp policy: ``"float32"`` or ``"bfloat16"`` (params kept in float32, model computed in
    bfloat16, outputs in float32), or a ``jmp.Policy`` passed through."""
    if isinstance(precision, jmp.Policy):
        return precision
    if precision in ("float32", "f32", "fp32"):
        return jmp.get_policy("params=float32,compute=float32,output=float32")
    if precision in ("bfloat16", "bf16"):
        return jmp.get_policy("params=float32,compute=bfloat16,output=float32")
    raise ValueError(f"precision must be 'float32', 'bfloat16' or a jmp.Policy, got {precision!r}")
