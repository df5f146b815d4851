"""bfloat16 model calls (jmp policy): bounded difference from float32 on the zoo models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax


@pytest.mark.parametrize("name", ["small_cnn", "efficientnet_lite0", "vit_tiny"])
def test_bfloat16_logits_stay_close_to_float32(name):
    m = xjax.models.get_model(name)
    mb = xjax.models.with_precision(m, "bfloat16")
    h, _, c = m.input_shape
    if c == 1:
        x = jax.random.uniform(jax.random.key(0), (8, h, h, 1))
    else:
        x = jnp.asarray(np.stack([xjax.data.resize_center_crop(p.image, h)
                                  for p in xjax.data.sample_photos()[:2]]))
    a = np.asarray(jax.jit(m.model_fn)(m.params, x))
    b = np.asarray(jax.jit(mb.model_fn)(mb.params, x))
    assert b.dtype == np.float32                                  # outputs cast back
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()          # measured 0.4-2.3%
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))
    f = np.asarray(jax.jit(mb.head_fn)(mb.params, mb.features_fn(mb.params, x)))
    assert np.abs(f - b).max() <= 0.05 * np.abs(a).max()


def test_bfloat16_saliency_agrees_with_float32(fmnist_cnn):
    m = fmnist_cnn
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    y = m.model_fn(m.params, x).argmax(-1)
    s32 = np.asarray(xjax.attributions.saliency(m.model_fn)(m.params, x, y))
    mb = xjax.models.with_precision(m, "bf16")
    s16 = np.asarray(xjax.attributions.saliency(mb.model_fn)(mb.params, x, y))
    assert s16.dtype == np.float32
    for a, b in zip(s32, s16, strict=True):
        ra, rb = np.argsort(np.argsort(a.ravel())), np.argsort(np.argsort(b.ravel()))
        assert np.corrcoef(ra, rb)[0, 1] > 0.9
    assert xjax.models.with_precision(m, "float32") is m
    with pytest.raises(ValueError, match="precision"):
        xjax.models.with_precision(m, "fp8")
