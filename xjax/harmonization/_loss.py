"""The neural harmonizer loss (Fel, Felipe, Linsley, Serre, NeurIPS 2022) and its training step."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jmp
import optax
from jaxtyping import Array, Bool, Float, Int

from xjax.train import policy
from xjax.typing import ModelFn, Params

__all__ = ["binomial_pyramid", "harmonization_loss", "make_train_step", "pyramidal_mse",
           "standardize_cut"]

_BINOMIAL = jnp.asarray([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_NO_DECAY = ("bn", "normalization", "embed", "Norm", "norm", "class_token")


def standardize_cut(m: Float[Array, "B H W"], eps: float = 1e-5) -> Float[Array, "B H W"]:
    r""":math:`z(m) = \mathrm{ReLU}\big((m - \mu(m)) / (\sigma(m) + \epsilon)\big)` per image
    (population standard deviation over the spatial axes)."""
    mu = m.mean(axis=(1, 2), keepdims=True)
    sd = m.std(axis=(1, 2), keepdims=True)
    return jax.nn.relu((m - mu) / (sd + eps))


def binomial_pyramid(m: Float[Array, "B H W"], levels: int) -> list:
    """Gaussian pyramid ``P_0 = m``, ``P_{i+1}`` = the 5x5 binomial filter ``outer(b, b)``,
    ``b = (1, 4, 6, 4, 1) / 16``, applied with stride 2 and SAME padding: ``levels`` maps."""
    from xjax._internal.validate import check_positive_int

    check_positive_int(levels, "levels", where="binomial_pyramid")
    k = jnp.outer(_BINOMIAL, _BINOMIAL).astype(m.dtype)[:, :, None, None]
    out = [m]
    for _ in range(levels - 1):
        a = out[-1][..., None]
        a = jax.lax.conv_general_dilated(a, k, (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        out.append(a[..., 0])
    return out


def pyramidal_mse(saliency: Float[Array, "B H W"], human: Float[Array, "B H W"],
                  has_map: Float[Array, " B"], *, levels: int = 5) -> Float[Array, ""]:
    r""":math:`\frac{1}{L}\sum_{i<L} \mathrm{mean}_{b,u,v}\big[(P_i(s_b) - P_i(h_b))^2_{uv}\,
    t_b\big]`; examples without a map (t = 0) count in the mean with 0 (as the reference code)."""
    total = 0.0
    for ps, ph in zip(binomial_pyramid(saliency, levels), binomial_pyramid(human, levels),
                      strict=True):
        total = total + jnp.mean((ps - ph) ** 2 * has_map[:, None, None])
    return total / levels


def _decayed(params, dtype=jnp.float32) -> Float[Array, ""]:
    """Sum of squared weights / 2 over every floating leaf whose path names no norm, embedding or
    class token (the reference's filter: "bn/", "normalization", "embed", "Norm", "norm",
    "class_token")."""
    total = jnp.zeros((), dtype)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if any(tag in name for tag in _NO_DECAY) or not jnp.issubdtype(jnp.asarray(leaf).dtype,
                                                                        jnp.floating):
            continue
        total = total + 0.5 * jnp.sum(jnp.asarray(leaf, dtype) ** 2)
    return total


def harmonization_loss(model_fn: ModelFn, params: Params, x: Float[Array, "B H W C"],
                       y: Int[Array, " B"], human_maps: Float[Array, "B H W"],
                       has_map: Bool[Array, " B"], *, lambda_harmonization: float = 1.0,
                       weight_decay: float = 1e-5, label_smoothing: float = 0.1, levels: int = 5,
                       gradient: str = "signed", precision: str | jmp.Policy = "float32") -> tuple:
    r"""The harmonization objective:

    .. math:: \mathcal{L} = \mathrm{CE}_{ls}(y, f(x)) + \lambda_w \sum_{v \in W}\|v\|^2/2 +
       \lambda_h \frac{1}{L}\sum_{i<L} \big\|P_i(z(\phi_f(x))) - P_i(\tilde z(h))\big\|^2

    with :math:`\phi_f(x) = \mathrm{mean}_c\, \partial f_y(x) / \partial x` (the signed
    channel-mean gradient of the true-class *logit*: double backprop, so the loss is
    differentiable in the parameters), :math:`z` :func:`standardize_cut`, and the human map
    standardized the same way then rescaled to the saliency's maximum,
    :math:`\tilde z(h) = z(h) / (\max z(h) + 10^{-6}) \cdot (\mathrm{sg}(\max z(\phi)) + 10^{-6})`
    per image; :func:`pyramidal_mse` over ``levels`` binomial levels; CE with label smoothing 0.1;
    weight decay 1e-5 on every weight but norms, embeddings and class tokens.

    Args:
      model_fn: ``(params, x) -> f32[B, K]`` logits.
      human_maps: ``f32[B, H, W]`` human feature importance (e.g. ClickMe).
      has_map: ``bool[B]`` the examples whose map counts.
      lambda_harmonization: lambda_h (1.0); weight_decay: lambda_w (1e-5).
      label_smoothing: 0.1; levels: pyramid levels compared (5: 224 ... 14).
      gradient: ``"signed"`` (the reference: channel mean of the signed gradient, so only its
        positive part is aligned after the cut) or ``"absolute"`` (channel mean of its absolute
        value, xjax's variant: negative evidence cannot hide where the human map is 0; see the
        decoy experiment in ``experiments/README.md``).
      precision: jmp policy of the model calls.

    Returns:
      ``(loss, metrics)`` with ``metrics = {"cross_entropy", "harmonization", "weight_decay"}``.

    References:
      T. Fel, I. Felipe, D. Linsley, T. Serre, "Harmonizing the object recognition strategies of
      deep neural networks with humans", NeurIPS 2022, arXiv:2211.04533.
    """
    mp = policy(precision)
    if gradient not in ("signed", "absolute"):
        raise ValueError(f"harmonization_loss: gradient must be 'signed' or 'absolute', got "
                         f"{gradient!r}")
    if human_maps.shape != x.shape[:3]:
        raise ValueError(f"harmonization_loss: human_maps must have shape {x.shape[:3]} (B, H, W), "
                         f"got {human_maps.shape}")

    ft = jnp.float64 if x.dtype == jnp.float64 else jnp.float32    # float64 under x64

    def logits_of(p, xs):
        return mp.cast_to_output(model_fn(mp.cast_to_compute(p), mp.cast_to_compute(xs))
                                 ).astype(ft)

    logits = logits_of(params, x)
    k = logits.shape[-1]
    onehot = jax.nn.one_hot(y, k, dtype=ft)
    grads = jax.grad(lambda xs: jnp.sum(logits_of(params, xs) * onehot))(x).astype(ft)
    sal = standardize_cut(grads.mean(axis=-1) if gradient == "signed"
                          else jnp.abs(grads).mean(axis=-1))
    hum = standardize_cut(human_maps.astype(ft))
    top_s = jax.lax.stop_gradient(sal.max(axis=(1, 2), keepdims=True))
    hum = hum / (hum.max(axis=(1, 2), keepdims=True) + 1e-6) * (top_s + 1e-6)
    harm = pyramidal_mse(sal, hum, has_map.astype(ft), levels=levels)
    targets = optax.smooth_labels(onehot, label_smoothing)
    ce = optax.softmax_cross_entropy(logits, targets).mean()
    wd = _decayed(params, ft)
    loss = ce + weight_decay * wd + lambda_harmonization * harm
    return loss, {"cross_entropy": ce, "harmonization": harm, "weight_decay": wd}


def make_train_step(model_fn: ModelFn, optimizer: optax.GradientTransformation, *,
                    lambda_harmonization: float = 1.0, weight_decay: float = 1e-5,
                    label_smoothing: float = 0.1, levels: int = 5, gradient: str = "signed",
                    precision: str | jmp.Policy = "float32") -> Callable:
    """A pure step ``step(params, opt_state, x, y, human_maps, has_map) -> (params, opt_state,
    loss)`` on :func:`harmonization_loss` (second-order: the gradient of a gradient). Shard the
    batch over a mesh and jit it (or give it to :func:`xjax.train.run_epochs`, which does both
    and checkpoints): XLA inserts the gradient all-reduce."""

    def step(params, opt_state, x, y, human_maps, has_map):
        def loss_of(p):
            return harmonization_loss(model_fn, p, x, y, human_maps, has_map,
                                      lambda_harmonization=lambda_harmonization,
                                      weight_decay=weight_decay, label_smoothing=label_smoothing,
                                      levels=levels, gradient=gradient, precision=precision)[0]

        loss, grads = jax.value_and_grad(loss_of)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step
