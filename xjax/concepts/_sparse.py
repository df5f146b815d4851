r"""Sparse concept banks: dictionary learning with lasso codes, and a TopK sparse autoencoder.

``sparse_coding`` minimizes :math:`\tfrac12\|A - UW\|_F^2 + \alpha\|U\|_1` subject to
:math:`\|W_k\|_2 \le 1`, alternating FISTA on the codes (warm started) and block coordinate
descent on the atoms (scikit-learn's ``DictionaryLearning`` objective; Mairal et al. 2009).

``topk_sae`` is the TopK sparse autoencoder of Gao et al. (2024): codes
:math:`z = \mathrm{TopK}(\mathrm{ReLU}((a - b_d) W_e + b_e))`, reconstruction :math:`z D + b_d`
with unit-norm atoms (rows of ``D``), trained by Adam on minibatches in one ``lax.scan``.

References:
  J. Mairal, F. Bach, J. Ponce, G. Sapiro, "Online dictionary learning for sparse coding",
  ICML 2009.
  A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm", SIAM J. Imaging
  Sci. 2 (2009).
  L. Gao et al., "Scaling and evaluating sparse autoencoders", arXiv:2406.04093 (2024).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from xjax._internal.validate import check_iterations
from xjax.concepts._factorization import Factorization, check_activations, check_rank

__all__ = ["SAEBank", "SparseCodingBank", "lasso_codes", "sparse_coding", "topk_sae"]


class SparseCodingBank(NamedTuple):
    """``components: f32[R, F]`` (atoms, ``||row|| <= 1``), fit ``codes: f32[M, R]``,
    ``objective`` (the final penalized loss per row), ``n_iter``."""

    components: Float[Array, "R F"]
    codes: Float[Array, "M R"]
    objective: Array
    n_iter: Array


class SAEBank(NamedTuple):
    """A TopK SAE: ``components: f32[R, F]`` (decoder atoms, unit norm), ``encoder: f32[F, R]``,
    ``encoder_bias: f32[R]``, ``decoder_bias: f32[F]``, fit ``codes: f32[M, R]``, and the
    training ``losses: f32[steps]``."""

    components: Float[Array, "R F"]
    encoder: Float[Array, "F R"]
    encoder_bias: Float[Array, " R"]
    decoder_bias: Float[Array, " F"]
    codes: Float[Array, "M R"]
    losses: Float[Array, " steps"]


def _soft(x, t):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def lasso_codes(a: Float[Array, "M F"], w: Float[Array, "R F"], alpha: float, *,
                steps: int = 200, init: Float[Array, "M R"] | None = None) -> Float[Array, "M R"]:
    r"""Lasso codes :math:`\arg\min_u \tfrac12\|a - uW\|^2 + \alpha\|u\|_1` per row (FISTA)."""
    gram = w @ w.T
    lip = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-12)
    aw = a @ w.T
    u0 = jnp.zeros((a.shape[0], w.shape[0]), a.dtype) if init is None else init

    def body(_, c):
        u, y, t = c
        u1 = _soft(y - (y @ gram - aw) / lip, alpha / lip)
        t1 = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return u1, u1 + (t - 1) / t1 * (u1 - u), t1

    return jax.lax.fori_loop(0, steps, body, (u0, u0, jnp.ones((), a.dtype)))[0]


def _update_atoms(a, u, w):
    """One block-coordinate pass over the atoms, each projected on the unit ball."""
    res = a - u @ w

    def body(k, c):
        w, res = c
        uk = u[:, k]
        wk = w[k]
        res = res + uk[:, None] * wk[None]
        nk = jnp.sum(uk * uk)
        new = jnp.where(nk > 0, uk @ res / jnp.maximum(nk, 1e-30), wk)
        new = new / jnp.maximum(jnp.linalg.norm(new), 1.0)
        return w.at[k].set(new), res - uk[:, None] * new[None]

    return jax.lax.fori_loop(0, w.shape[0], body, (w, res))[0]


def sparse_coding(rank: int, *, alpha: float = 1.0, max_iter: int = 100, tol: float = 1e-8,
                  code_steps: int = 50, transform_steps: int = 500) -> Factorization:
    r"""Dictionary learning with an L1 penalty on the codes (scikit-learn's ``alpha=1``).

    Args:
      rank: R atoms.
      alpha: the L1 weight on the codes.
      max_iter: alternations (codes, then atoms); stop when the objective improves by less than
        ``tol`` relative.
      code_steps: FISTA steps per alternation (warm started).
      transform_steps: FISTA steps of ``transform``.

    Returns:
      A :class:`Factorization` initialized from the SVD (deterministic; ``key`` is ignored).
    """
    rank = check_rank(rank, "sparse_coding")
    check_iterations("sparse_coding", max_iter=max_iter, tol=tol)
    if alpha < 0:
        raise ValueError(f"sparse_coding: alpha must be >= 0, got {alpha}")

    def objective(a, u, w):
        return 0.5 * jnp.sum((a - u @ w) ** 2) + alpha * jnp.sum(jnp.abs(u))

    @jax.jit
    def _fit(a):
        a = a.astype(jnp.float32)
        uu, s, vt = jnp.linalg.svd(a, full_matrices=False)
        u, w = uu[:, :rank] * s[:rank][None], vt[:rank]

        def cond(c):
            i, _, _, obj, prev = c
            return (i == 0) | ((i < max_iter) & (prev - obj > tol * jnp.abs(prev)))

        def body(c):
            i, u, w, obj, _ = c
            u = lasso_codes(a, w, alpha, steps=code_steps, init=u)
            w = _update_atoms(a, u, w)
            return i + 1, u, w, objective(a, u, w), obj

        obj0 = objective(a, u, w)
        i, u, w, obj, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), u, w,
                                                          obj0, obj0))
        return SparseCodingBank(w, u, obj / a.shape[0], i)

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> SparseCodingBank:
        del key
        check_activations(a, rank, "sparse_coding")
        return _fit(a)

    def transform(bank, a):
        flat = a.reshape(-1, a.shape[-1]).astype(jnp.float32)
        u = lasso_codes(flat, bank.components, alpha, steps=transform_steps)
        return u.reshape(a.shape[:-1] + (rank,))

    def inverse(bank, u):
        return u @ bank.components

    return Factorization(fit, transform, inverse, False, "sparse_coding")


def _topk(pre, k):
    vals, idx = jax.lax.top_k(pre, k)
    return jnp.sum(jax.nn.one_hot(idx, pre.shape[-1], dtype=pre.dtype)
                   * jax.nn.relu(vals)[..., None], axis=-2)


def topk_sae(rank: int, *, k: int | None = None, steps: int = 2000, batch_size: int = 256,
             learning_rate: float = 1e-3) -> Factorization:
    """A TopK sparse autoencoder (ReLU encoder, unit-norm decoder atoms).

    Args:
      rank: R, the dictionary size.
      k: active codes per row; ``None`` gives ``max(1, R // 10)`` (overcomplete's default).
      steps: Adam steps on minibatches of ``batch_size`` rows drawn with ``key``.
      learning_rate: Adam's step size.

    Returns:
      A :class:`Factorization`; ``fit(a, *, key)`` needs ``key`` (the initialization and the
      minibatches); ``transform`` gives exactly ``k`` non-negative codes per row at most.
    """
    rank = check_rank(rank, "topk_sae")
    k = max(1, rank // 10) if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= rank:
        raise ValueError(f"topk_sae: k must be an int in [1, rank={rank}], got {k!r}")
    opt = optax.adam(learning_rate)

    def encode(p, a):
        enc, eb, _, db = p
        return _topk((a - db.reshape((1,) * (a.ndim - 1) + db.shape)) @ enc
                     + eb.reshape((1,) * (a.ndim - 1) + eb.shape), k)

    def decode(p, z):
        rec = z @ p[2]
        return rec + p[3].reshape((1,) * (rec.ndim - 1) + p[3].shape)

    @jax.jit
    def _fit(a, key):
        a = a.astype(jnp.float32)
        m, f = a.shape
        k_init, k_batch = jax.random.split(key)
        d = jax.random.normal(k_init, (rank, f))
        d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
        scale = jnp.sqrt(jnp.mean(jnp.sum((a - a.mean(0, keepdims=True)) ** 2, 1)))
        p = (d.T / jnp.maximum(scale, 1e-6), jnp.zeros(rank), d, a.mean(0))

        def loss(p, xb):
            return jnp.mean(jnp.sum((xb - decode(p, encode(p, xb))) ** 2, 1))

        def step(c, kb):
            p, s = c
            xb = a[jax.random.randint(kb, (min(batch_size, m),), 0, m)]
            val, g = jax.value_and_grad(loss)(p, xb)
            with jax.numpy_dtype_promotion("standard"):      # optax mixes int counters in
                upd, s = opt.update(g, s, p)
                p = optax.apply_updates(p, upd)
            dn = p[2] / jnp.maximum(jnp.linalg.norm(p[2], axis=1, keepdims=True), 1e-12)
            return ((p[0], p[1], dn, p[3]), s), val

        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(p)
        (p, _), losses = jax.lax.scan(step, (p, state), jax.random.split(k_batch, steps))
        return SAEBank(p[2], p[0], p[1], p[3], encode(p, a), losses)

    def fit(a: Float[Array, "M F"], *, key: jax.Array | None = None) -> SAEBank:
        check_activations(a, rank, "topk_sae")
        if key is None:
            raise ValueError("topk_sae: fit needs key=jax.random.key(seed) (initialization and "
                             "minibatches)")
        return _fit(a, key)

    def transform(bank, a):
        return encode((bank.encoder, bank.encoder_bias, bank.components, bank.decoder_bias), a)

    def inverse(bank, u):
        return decode((None, None, bank.components, bank.decoder_bias), u)

    return Factorization(fit, transform, inverse, False, "topk_sae")
