"""A small training loop: optax + jmp, data parallel over a device mesh, resumable checkpoints.

``fit`` trains any pure ``model_fn(params, x) -> logits`` (for example a zoo model or
``xjax.models.from_nnx(module)``) on in-memory arrays. Each epoch's order is drawn from
``jax.random.fold_in(key, epoch)``, and a checkpoint (params, optimizer state, epoch) is written
at the end of every epoch with orbax, so a run that is killed and started again with the same
arguments resumes at the last finished epoch and reaches the same parameters as an uninterrupted
run.

Models with batch norm are trained with their running statistics frozen (``model_fn`` is pure);
train such models with their own nnx training step.
"""

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jmp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, Int

from xjax._internal.precision import policy
from xjax._internal.validate import check_images, check_positive_int
from xjax.typing import ModelFn, Params

__all__ = ["TrainState", "cross_entropy", "evaluate", "fit", "make_train_step", "policy",
           "run_epochs"]


def cross_entropy(logits: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, ""]:
    """Mean softmax cross-entropy with integer labels, computed in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()


def make_train_step(model_fn: ModelFn, optimizer: optax.GradientTransformation, *,
                    loss_fn: Callable = cross_entropy, precision: str | jmp.Policy = "float32",
                    post_update: Callable | None = None) -> Callable:
    """A pure training step ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.

    .. math:: \\theta \\leftarrow \\theta + \\text{optimizer}(\\nabla_\\theta
       \\, \\text{loss}(\\text{model\\_fn}(\\theta, x), y))

    Under the jmp policy, parameters and inputs are cast to the compute dtype for the model
    call; the loss, gradients and optimizer run in the parameter dtype (float32). bfloat16 has
    float32's range, so no loss scaling is applied. Shard ``x, y`` over a mesh axis and jit the
    step: XLA inserts the gradient all-reduce (data parallelism).
    """
    mp = policy(precision)

    def loss_of(params, x, y):
        out = model_fn(mp.cast_to_compute(params), mp.cast_to_compute(x))
        return loss_fn(mp.cast_to_output(out), y)

    def step(params: Params, opt_state: Any, x: Float[Array, "B H W C"], y: Int[Array, " B"]):
        loss, grads = jax.value_and_grad(loss_of)(params, x, y)
        # optax mixes Python floats with int32 step counts (bias correction), which strict
        # promotion rejects; the optimizer is traced under standard promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if post_update is not None:
            params = post_update(params)
        return params, opt_state, loss

    return step


@dataclasses.dataclass
class TrainState:
    """What :func:`fit` returns: final params and optimizer state, and per-epoch history."""

    params: Params
    opt_state: Any
    history: list[dict]


def _mesh(mesh: Mesh | None) -> Mesh:
    return mesh if mesh is not None else Mesh(np.array(jax.devices()), ("data",))


def evaluate(model_fn: ModelFn, params: Params, x: Float[np.ndarray, "N H W C"],
             y: Int[np.ndarray, " N"], *, batch_size: int = 1000,
             precision: str | jmp.Policy = "float32") -> float:
    """Top-1 accuracy of ``model_fn`` on ``(x, y)``, in batches of ``batch_size`` (the last batch
    is padded, so one compiled function serves every batch)."""
    check_images(x, "x", where="evaluate", nonempty=True, finite=True,
                 unit_range=True)
    batch_size = check_positive_int(batch_size, "batch_size", where="evaluate")
    mp = policy(precision)

    @jax.jit
    def predict(params, xb):
        return jnp.argmax(model_fn(mp.cast_to_compute(params), mp.cast_to_compute(xb)), axis=-1)

    n, correct = len(x), 0
    for start in range(0, n, batch_size):
        xb = np.asarray(x[start:start + batch_size])
        m = len(xb)
        if m < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - m,) + xb.shape[1:], xb.dtype)])
        pred = np.asarray(predict(params, xb))[:m]
        correct += int((pred == np.asarray(y[start:start + m])).sum())
    return correct / n


def fit(model_fn: ModelFn, params: Params, x: Float[np.ndarray, "N H W C"],
        y: Int[np.ndarray, " N"], *, optimizer: optax.GradientTransformation, epochs: int,
        batch_size: int, key: jax.Array, loss_fn: Callable = cross_entropy,
        precision: str | jmp.Policy = "float32", mesh: Mesh | None = None,
        checkpoint_dir: str | None = None, eval_data: tuple | None = None,
        progress: bool = True, post_update: Callable | None = None) -> TrainState:
    """Train ``params`` with minibatch steps, data parallel over ``mesh``'s first axis.

    Args:
      model_fn: ``(params, x: f32[B, H, W, C]) -> f32[B, K]``.
      params: initial parameters.
      x: training images ``f32[N, H, W, C]`` (NumPy, kept on the host).
      y: labels ``i32[N]``.
      optimizer: any optax transformation.
      epochs: number of passes; the last partial batch of an epoch is dropped.
      batch_size: global batch; must be divisible by the number of devices in ``mesh``.
      key: ``jax.random.key``; epoch ``e`` is shuffled with ``fold_in(key, e)``.
      loss_fn: ``(logits, y) -> scalar``.
      precision: ``"float32"``, ``"bfloat16"`` or a ``jmp.Policy`` (see :func:`make_train_step`).
      mesh: device mesh whose first axis splits the batch (default: every visible device).
      checkpoint_dir: if given, save after each epoch and resume from the latest checkpoint.
      eval_data: optional ``(x, y)`` scored with :func:`evaluate` after each epoch.
      progress: show a tqdm progress bar.
      post_update: optional pure ``params -> params`` run after every optimizer step (see
        :func:`make_train_step`).

    Returns:
      :class:`TrainState` with the final params, optimizer state and history
      (``{"epoch", "loss", "eval_accuracy"}`` per epoch run in this call).
    """
    check_images(x, "x", where="fit", nonempty=True, finite=True,
                 unit_range=True)
    epochs = check_positive_int(epochs, "epochs", where="fit")
    batch_size = check_positive_int(batch_size, "batch_size", where="fit")
    if len(x) != len(y):
        raise ValueError(f"fit: x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size > len(x):
        raise ValueError(f"fit: batch_size={batch_size} is larger than the dataset ({len(x)})")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError("fit: key must be a typed key from jax.random.key(seed)")
    step = make_train_step(model_fn, optimizer, loss_fn=loss_fn, precision=precision,
                           post_update=post_update)
    eval_fn = None if eval_data is None else (
        lambda p: {"eval_accuracy": evaluate(model_fn, p, *eval_data, precision=precision)})
    return run_epochs(step, params, optimizer.init(params), (x, np.asarray(y, np.int32)),
                      epochs=epochs, batch_size=batch_size, key=key, mesh=mesh,
                      checkpoint_dir=checkpoint_dir, progress=progress, eval_fn=eval_fn,
                      where="fit")


def run_epochs(step: Callable, params: Params, opt_state: Any, data: tuple, *, epochs: int,
               batch_size: int, key: jax.Array, mesh: Mesh | None = None,
               checkpoint_dir: str | None = None, progress: bool = True,
               eval_fn: Callable | None = None, where: str = "run_epochs") -> "TrainState":
    """The loop under :func:`fit`, for any pure ``step(params, opt_state, *batch) -> (params,
    opt_state, loss)`` (e.g. the harmonization step): ``data`` is a tuple of host arrays with a
    common leading axis, shuffled per epoch with ``fold_in(key, epoch)``, cut into global batches
    sharded over the mesh's first axis; orbax checkpoints after every epoch and resumes from the
    latest; ``eval_fn(params) -> dict`` is logged after each epoch."""
    epochs = check_positive_int(epochs, "epochs", where=where)
    batch_size = check_positive_int(batch_size, "batch_size", where=where)
    n = len(data[0])
    if any(len(a) != n for a in data):
        raise ValueError(f"{where}: every data array needs the same length, got "
                         f"{[len(a) for a in data]}")
    if batch_size > n:
        raise ValueError(f"{where}: batch_size={batch_size} is larger than the dataset ({n})")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"{where}: key must be a typed key from jax.random.key(seed)")
    mesh = _mesh(mesh)
    ndev = mesh.devices.shape[0]
    if batch_size % ndev:
        raise ValueError(f"{where}: batch_size={batch_size} must be divisible by the {ndev} "
                         "devices of the mesh's first axis")
    sharded = NamedSharding(mesh, P(mesh.axis_names[0]))
    replicated = NamedSharding(mesh, P())
    step = jax.jit(step, donate_argnums=(0, 1))
    # copies: the step donates its buffers, which must not be the caller's arrays
    params = jax.device_put(params, replicated, may_alias=False)
    opt_state = jax.device_put(opt_state, replicated, may_alias=False)
    start_epoch = 0
    manager = None
    if checkpoint_dir is not None:
        import orbax.checkpoint as ocp

        manager = ocp.CheckpointManager(
            os.path.abspath(checkpoint_dir),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False))
        latest = manager.latest_step()
        if latest is not None:
            restored = manager.restore(latest, args=ocp.args.StandardRestore(
                {"params": params, "opt_state": opt_state}))
            params = jax.device_put(restored["params"], replicated)
            opt_state = jax.device_put(restored["opt_state"], replicated)
            start_epoch = latest

    from tqdm.auto import tqdm

    steps_per_epoch = n // batch_size
    history = []
    for epoch in range(start_epoch, epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False)
        for i in bar:
            idx = order[i * batch_size:(i + 1) * batch_size]
            batch = [jax.device_put(np.asarray(a[idx]), sharded) for a in data]
            params, opt_state, loss = step(params, opt_state, *batch)
            losses.append(loss)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}")
        record = {"epoch": epoch + 1, "loss": float(jnp.mean(jnp.stack(losses)))}
        if eval_fn is not None:
            record.update(eval_fn(params))
        history.append(record)
        if progress:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items()), flush=True)
        if manager is not None:
            import orbax.checkpoint as ocp

            manager.save(epoch + 1, args=ocp.args.StandardSave(
                {"params": params, "opt_state": opt_state}))
            manager.wait_until_finished()
    if manager is not None:
        manager.close()
    return TrainState(params, opt_state, history)
