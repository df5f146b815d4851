"""Save and restore any parameter pytree with orbax (atomic writes; restores onto a template)."""

import os
from typing import Any

import jax

__all__ = ["restore_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, tree: Any, *, overwrite: bool = False) -> None:
    """Write ``tree`` (params, optimizer state, any pytree of arrays) to the directory ``path``.

    Orbax writes to a temporary directory and renames it when complete, so a crash never leaves a
    half-written checkpoint under ``path``.
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"path: {path!r} exists; pass overwrite=True to replace it")
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, tree, force=overwrite)
        ckpt.wait_until_finished()


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``like``.

    Args:
      path: the checkpoint directory.
      like: a pytree with the target structure, shapes and dtypes (for example a model's freshly
        initialized ``params``, or ``jax.eval_shape`` of it); its shardings are used too.

    Raises:
      FileNotFoundError: no checkpoint at ``path``.
      ValueError: the checkpoint does not match ``like``.
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"path: no checkpoint directory at {path!r}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with ocp.StandardCheckpointer() as ckpt:
        try:
            return ckpt.restore(path, abstract)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"path: checkpoint {path!r} does not match the structure of like: "
                             f"{e}") from e
