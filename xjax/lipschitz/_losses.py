"""Losses and certificates for 1-Lipschitz classifiers."""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = ["certificate", "certified_accuracy", "hinge", "hkr", "kr", "multiclass_hkr", "tau_cce"]


def _signs(logits, labels):
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return onehot, 2.0 * onehot - 1.0


def kr(logits: Float[Array, "B K"], labels: Int[Array, " B"]) -> Float[Array, ""]:
    r"""Kantorovich-Rubinstein dual term, one-vs-all and averaged over classes:
    :math:`\frac{1}{K}\sum_k \big(\mathbb{E}_{y = k} f_k - \mathbb{E}_{y \ne k} f_k\big)`, the
    expectations estimated on the batch (a class absent from the batch contributes its other
    half only). Maximized by the loss."""
    onehot, _ = _signs(logits, labels)
    pos = jnp.sum(onehot * logits, 0) / jnp.maximum(jnp.sum(onehot, 0), 1.0)
    neg = jnp.sum((1.0 - onehot) * logits, 0) / jnp.maximum(jnp.sum(1.0 - onehot, 0), 1.0)
    return jnp.mean(pos - neg)


def hinge(logits: Float[Array, "B K"], labels: Int[Array, " B"], *, margin: float = 1.0
          ) -> Float[Array, ""]:
    r"""Multiclass hinge, deel-lip convention: :math:`\mathrm{ReLU}(m/2 - s_k f_k)` with
    :math:`s_k = \pm 1`, the true-class term weighted by :math:`K - 1`, mean over classes and
    batch (note the **m/2**: the margin m is the full gap between the two sides)."""
    _, sign = _signs(logits, labels)
    h = jax.nn.relu(margin / 2.0 - sign * logits)
    h = jnp.where(sign > 0, h * (logits.shape[-1] - 1), h)
    return jnp.mean(h)


def multiclass_hkr(logits: Float[Array, "B K"], labels: Int[Array, " B"], *, alpha: float = 10.0,
                   margin: float = 1.0) -> Float[Array, ""]:
    r"""Hinge-Kantorovich-Rubinstein loss (Serrurier et al., CVPR 2021), deel-lip's TensorFlow
    convention: :math:`\mathcal{L} = \alpha\, \mathrm{hinge}_m - \mathrm{KR}` with
    ``alpha = 10``, ``margin = 1`` (``MulticlassHKR``). torchlip writes
    :math:`\alpha' \mathrm{hinge} - (1 - \alpha')\mathrm{KR}` with :math:`\alpha' \in [0, 1]`; the
    two agree up to a positive factor for :math:`\alpha' = \alpha / (1 + \alpha)`."""
    return alpha * hinge(logits, labels, margin=margin) - kr(logits, labels)


def hkr(scores: Float[Array, " B"], labels: Int[Array, " B"], *, alpha: float = 10.0,
        margin: float = 1.0) -> Float[Array, ""]:
    r"""Binary HKR on one score per example, labels in {0, 1}:
    :math:`\alpha\,\mathbb{E}\,\mathrm{ReLU}(m/2 - s f) - (\mathbb{E}_{y=1} f - \mathbb{E}_{y=0} f)`
    with :math:`s = 2y - 1`."""
    s = 2.0 * labels.astype(scores.dtype) - 1.0
    pos = labels > 0
    n_pos = jnp.maximum(jnp.sum(pos), 1).astype(scores.dtype)
    n_neg = jnp.maximum(jnp.sum(~pos), 1).astype(scores.dtype)
    k = jnp.sum(jnp.where(pos, scores, 0.0)) / n_pos - jnp.sum(jnp.where(pos, 0.0, scores)) / n_neg
    return alpha * jnp.mean(jax.nn.relu(margin / 2.0 - s * scores)) - k


def tau_cce(logits: Float[Array, "B K"], labels: Int[Array, " B"], *, tau: float = 10.0
            ) -> Float[Array, ""]:
    r"""Temperature-scaled cross-entropy for Lipschitz networks (deel-lip
    ``TauCategoricalCrossentropy``): :math:`\mathrm{CE}(\tau f, y) / \tau`; large tau pushes
    margins up, small tau accuracy."""
    logp = jax.nn.log_softmax(tau * logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1)) / tau


def certificate(logits: Float[Array, "B K"], labels: Int[Array, " B"] | None = None, *,
                lipschitz: float = 1.0, disjoint: bool = False) -> Float[Array, " B"]:
    r"""Certified l2 radius of an L-Lipschitz (l2 -> l2) classifier's decision.

    With margin :math:`M = f_y - \max_{k \ne y} f_k` (y the label, or the predicted class when
    ``labels`` is None), each :math:`f_y - f_k` is :math:`\sqrt 2 L`-Lipschitz, so no
    perturbation of norm below :math:`M / (\sqrt{2} L)` changes the decision; with
    ``disjoint=True`` (only each logit is L-Lipschitz, e.g. a last ``FrobeniusDense``) the radius
    is :math:`M / (2L)`. One output: a binary score, radius :math:`|f| / L`. Negative when the
    label is misclassified."""
    if logits.shape[-1] == 1:
        f = logits[:, 0]
        if labels is None:
            return jnp.abs(f) / lipschitz
        return jnp.where(labels > 0, f, -f) / lipschitz
    if labels is None:
        labels = jnp.argmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.bool_)
    true = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1)
    rival = jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)
    scale = 2.0 if disjoint else math.sqrt(2.0)
    return (true - rival) / (scale * lipschitz)


def certified_accuracy(logits: Float[Array, "B K"], labels: Int[Array, " B"], epsilon: float, *,
                       lipschitz: float = 1.0, disjoint: bool = False) -> Float[Array, ""]:
    """Fraction of examples correctly classified with a certified radius above ``epsilon``
    (``epsilon = 0``: clean accuracy)."""
    r = certificate(logits, labels, lipschitz=lipschitz, disjoint=disjoint)
    return jnp.mean((r > epsilon).astype(jnp.float32))
