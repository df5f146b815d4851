"""Closed forms for CAMs, occlusion, RISE, LIME and KernelSHAP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax
from tests.helpers import images, linear_model, linear_params

A = xjax.attributions


def test_grad_cam_linear_head_closed_form():
    rng = np.random.default_rng(0)
    wf = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    wh = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    params = {"f": wf, "h": wh}
    features = lambda p, x: jax.nn.relu(x[:, ::2, ::2, :] @ p["f"])      # [B, 4, 4, 6]
    head = lambda p, a: a.mean(axis=(1, 2)) @ p["h"]
    x = images(2)
    y = jnp.array([1, 3], jnp.int32)
    a = features(params, x)
    expected = jax.nn.relu(jnp.einsum("bhwf,bf->bhw", a, wh[:, y].T / 16.0))
    got = A.grad_cam(features, head, resize="nearest")(params, x, y)
    np.testing.assert_allclose(got, jax.image.resize(expected, (2, 8, 8), "nearest"), rtol=1e-5,
                               atol=1e-7)
    # Grad-CAM++ with a linear head: g is constant over positions, so
    # alpha = g^2 / (2 g^2 + g^3 sum_ij A) = 1 / (2 + g sum_ij A)
    g = wh[:, y].T / 16.0
    alpha = 1.0 / (2.0 + g * a.sum((1, 2)))
    w = 16.0 * alpha * jax.nn.relu(g)
    expected_pp = jax.nn.relu(jnp.einsum("bhwf,bf->bhw", a, w))
    got_pp = A.grad_cam_pp(features, head, resize="nearest")(params, x, y)
    np.testing.assert_allclose(got_pp, jax.image.resize(expected_pp, (2, 8, 8), "nearest"),
                               rtol=1e-4, atol=1e-7)


def left_half_model(p, x):
    """Uses only the left half of the image (columns 0-3); the right half is ignored."""
    return jnp.einsum("nhwc,hwck->nk", x[:, :, :4], p)


@pytest.fixture(scope="module")
def half():
    return linear_params(shape=(8, 4, 3, 4)), images(2), jnp.array([0, 3], jnp.int32)


def test_occlusion_zero_where_ignored_and_exact_on_linear(half):
    p, x, y = half
    maps = A.occlusion(left_half_model, patch_size=2, patch_stride=2)(p, x, y)
    # Hiding a patch the model ignores leaves the score unchanged in exact arithmetic; in float32
    # the two scores are sums rounded differently (each row computed in another batch), so they
    # differ by a few ulps of the score: 16 eps(float32) x |score| bounds that.
    score = np.abs(np.asarray(left_half_model(p, x)))[np.arange(2), np.asarray(y)]
    ulps = 16 * np.finfo(np.float32).eps * score[:, None, None]
    assert (np.abs(np.asarray(maps[:, :, 4:])) <= ulps).all()
    # linear model: hiding a patch drops the score by the patch's contribution
    contrib = jnp.einsum("nhwc,hwcn->nhw", x[:, :, :4], p[..., y])
    blocks = contrib.reshape(2, 4, 2, 2, 2).sum((2, 4))
    np.testing.assert_allclose(maps[:, :, :4], jnp.repeat(jnp.repeat(blocks, 2, 1), 2, 2),
                               rtol=1e-4, atol=1e-5)
    # overlapping patches are averaged over their coverage
    over = A.occlusion(left_half_model, patch_size=4, patch_stride=2)(p, x, y)
    assert (np.abs(np.asarray(over[:, :, 6:])) <= ulps).all()


def _numpy_captum_occlusion(score, x, size, stride):
    """Captum's Occlusion written out in NumPy float64: ceil((H - k) / s) + 1 windows per axis at
    multiples of s, the last cut at the edge; each pixel averages the drops of its windows."""
    n, h, w = x.shape[:3]
    total, count = np.zeros((n, h, w)), np.zeros((h, w))
    base = score(x)
    for r0 in range(0, (-(-(h - size) // stride)) * stride + 1, stride):
        for c0 in range(0, (-(-(w - size) // stride)) * stride + 1, stride):
            hidden = x.copy()
            hidden[:, r0:r0 + size, c0:c0 + size] = 0.0
            total[:, r0:r0 + size, c0:c0 + size] += (base - score(hidden))[:, None, None]
            count[r0:r0 + size, c0:c0 + size] += 1
    assert (count > 0).all()
    return total / count


@pytest.mark.parametrize("batch_size", [None, 7, 64])
def test_occlusion_covers_the_edge_as_captum(batch_size):
    """16x16 images, patch 3, stride 2: 13 is not a multiple of 2, and the old windows never
    reached the last row and column (relative difference 0.375 from Captum). Batch sizes: both
    images in one block; each image's unoccluded score and 49 patches cut into blocks of 7 (the
    unoccluded score, in the first, is carried to the later ones); one image per block."""
    rng = np.random.default_rng(4)
    wts = rng.normal(size=(16, 16, 2))
    x = rng.uniform(size=(2, 16, 16, 2))
    score64 = lambda z: np.tanh(z * wts).sum((1, 2, 3)) + (z[..., 0] * z[..., 1]).sum((1, 2))
    model = lambda p, z: (jnp.tanh(z * p[None]).sum((1, 2, 3)) + (z[..., 0] * z[..., 1]).sum((1, 2)))[:, None]
    want = _numpy_captum_occlusion(score64, x, 3, 2)
    got = A.occlusion(model, patch_size=3, patch_stride=2, batch_size=batch_size)(
        jnp.asarray(wts, jnp.float32), jnp.asarray(x, jnp.float32), jnp.zeros((2,), jnp.int32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(want[:, -1]).min() > 0                     # the last row is really scored


def test_rise_ignored_pixels_and_ranking():
    """A model that reads one pixel block. RISE's map is E[s M_i] / p: where the model looks it
    is E[s | M_i = 1]; on ignored pixels it is E[s], a constant, not 0 (RISE has no baseline
    correction); the relevant block is ranked first."""
    p = jnp.zeros((8, 8, 1, 1)).at[2:4, 2:4].set(1.0)
    model = lambda w, x: jnp.einsum("nhwc,hwck->nk", x, w)
    x = jnp.ones((1, 8, 8, 1))
    y = jnp.zeros((1,), jnp.int32)
    maps = A.rise(model, nb_samples=2000, grid_size=4)(p, x, y, key=jax.random.key(0))[0]
    far = np.asarray(maps[6:, 6:])
    assert float(maps[2:4, 2:4].min()) > float(far.max())
    mean_score = 4 * 0.5  # E[s] = sum of weights x p
    np.testing.assert_allclose(far.mean(), mean_score, rtol=0.1)
    assert far.std() < 0.1 * mean_score


def test_kernel_shap_exact_on_additive_model(half):
    p, x, y = half
    w = linear_params()
    maps = A.kernel_shap(linear_model, nb_samples=64, segmentation="grid", grid_size=2,
                         baseline=0.1)(w, x, y, key=jax.random.key(0))
    contrib = jnp.einsum("nhwc,hwcn->nhw", x - 0.1, w[..., y])
    shap = contrib.reshape(2, 2, 4, 2, 4).sum((2, 4))           # Shapley value of each quadrant
    np.testing.assert_allclose(maps[:, ::4, ::4], shap, rtol=1e-3, atol=1e-3)
    # efficiency: attributions sum to s(x) - s(baseline)
    per_segment = maps[:, ::4, ::4].sum((1, 2))
    f = lambda z: A.logit(linear_model(w, z), y)
    np.testing.assert_allclose(per_segment, f(x) - f(jnp.full_like(x, 0.1)), rtol=1e-4, atol=1e-4)


def test_lime_ranks_the_relevant_segment_first():
    p = jnp.zeros((8, 8, 1, 1)).at[4:, :4].set(1.0)            # only the bottom-left quadrant
    model = lambda w, x: jnp.einsum("nhwc,hwck->nk", x, w)
    x = jnp.ones((1, 8, 8, 1))
    maps = A.lime(model, nb_samples=64, segmentation="grid", grid_size=2)(
        p, x, jnp.zeros((1,), jnp.int32), key=jax.random.key(0))[0]
    quads = np.asarray(maps[::4, ::4])
    assert quads.argmax() == 2 and quads[1, 0] > 5 * np.abs(np.delete(quads.ravel(), 2)).max()


def test_segmentations():
    seg = A.grid_segments(8, 6, 2)
    assert seg.shape == (8, 6) and set(np.unique(seg).tolist()) == {0, 1, 2, 3}
    img = jnp.zeros((16, 16, 3)).at[:, 8:].set(1.0)
    labels = A.slic_segments(img, nb_segments=4)
    assert labels.shape == (16, 16)
    # no superpixel straddles the colour edge
    for lab in np.unique(labels):
        cols = np.nonzero(np.asarray(labels) == lab)[1]
        assert cols.max() < 8 or cols.min() >= 8
    # custom per-input segmentations at call time
    w = linear_params()
    x = images(2)
    segs = jnp.broadcast_to(A.grid_segments(8, 8, 2), (2, 8, 8))
    e = A.kernel_shap(linear_model, nb_samples=16, segmentation="grid", grid_size=2)
    np.testing.assert_allclose(e(w, x, jnp.array([0, 1]), key=jax.random.key(1), segments=segs),
                               e(w, x, jnp.array([0, 1]), key=jax.random.key(1)), rtol=1e-6)
    with pytest.raises(ValueError, match="segments"):
        e(w, x, jnp.array([0, 1]), key=jax.random.key(1), segments=segs[:1])


def test_score_presets():
    out = jnp.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(A.regression(out, jnp.array([[0.0, 1.0, 0.5]])), [3.5])
    np.testing.assert_allclose(A.probability(out, jnp.array([2])), jax.nn.softmax(out)[:, 2])
    seg = jnp.arange(2 * 2 * 2, dtype=jnp.float32).reshape(1, 2, 2, 2)
    target = jnp.zeros((1, 2, 2, 2)).at[0, 0, :, 1].set(1.0)      # class 1, top row
    np.testing.assert_allclose(A.semantic_segmentation(seg, target), [(1.0 + 3.0) / 2])
    boxes = jnp.array([[[0, 0, 2, 2, 0.9, 0.8, 0.2], [5, 5, 6, 6, 1.0, 0.0, 1.0]]], jnp.float32)
    target_box = jnp.array([[0, 0, 2, 1, 1.0, 1.0, 0.0]], jnp.float32)
    cos = 0.8 / np.sqrt(0.8 ** 2 + 0.2 ** 2)
    np.testing.assert_allclose(A.object_detection(boxes, target_box), [0.5 * 0.9 * cos], rtol=1e-5)
