"""Feature visualization: MACO keeps its magnitude, objectives rise, keys, jit, algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xjax import featviz as fv
from xjax.featviz._spectrum import _compute_sample_photo_magnitude

IDENT = lambda params, x: x                                 # a "layer" that is the image itself


def _ratio_interior(x1, mag):
    """|rfft2(x1)| / r on the interior columns without the DC bin: [C, H, W2 - 2]."""
    spec = np.abs(np.fft.rfft2(np.moveaxis(np.asarray(x1), -1, 0)))
    ratio = spec[:, :, 1:-1] / np.asarray(mag)[:, :, 1:-1]
    return ratio


@pytest.fixture(scope="module")
def cnn(fmnist_cnn):
    return fmnist_cnn


def test_maco_magnitude_is_preserved_along_the_optimization(cnn):
    shape = (28, 28, 1)
    pz = fv.maco(shape)
    mag = fv.sample_photo_magnitude((28, 28), 1)
    crops = fv.random_crops((28, 28), nb_crops=2, box_start=1.0, box_end=0.8)
    images = []
    for steps in (1, 2, 5):
        r = fv.optimize(cnn.model_fn, cnn.params, fv.logit(3), pz, steps=steps,
                        transforms=crops, key=jax.random.key(0))
        x1 = fv.maco_standardized(r.params[0], mag, (28, 28))
        ratio = _ratio_interior(x1, mag)
        np.testing.assert_allclose(ratio, ratio.mean(), rtol=2e-3)
        images.append(np.asarray(x1))
    assert not np.allclose(images[0], images[-1])        # while the phase did change


@pytest.mark.parametrize("name", ["maco", "fourier"])
def test_objective_rises(cnn, name):
    pz = fv.maco((28, 28, 1)) if name == "maco" else fv.fourier((28, 28, 1))
    # a constant crop size, so that the scores along the run measure the same objective
    t = (fv.random_crops((28, 28), nb_crops=4, box_start=0.9, box_end=0.9) if name == "maco"
         else fv.lucid((28, 28)))
    r = fv.optimize(cnn.model_fn, cnn.params, fv.logit(jnp.arange(3)), pz, steps=48,
                    transforms=t, key=jax.random.key(1))
    s = np.asarray(r.scores)
    assert r.images.shape == (3, 28, 28, 1) and s.shape == (48, 3)
    rise = s[-6:].mean(0) - s[:6].mean(0)
    assert np.all(rise > 0) and rise.mean() > 1.0, rise
    assert np.all(np.asarray(r.images) >= 0) and np.all(np.asarray(r.images) <= 1)
    assert np.all(np.asarray(r.transparency) >= 0) and float(r.transparency.max()) > 0


def test_determinism_and_jit_equals_eager(cnn):
    pz = fv.fourier((28, 28, 1))
    run = lambda key: fv.optimize(cnn.model_fn, cnn.params, fv.logit(2), pz, steps=1,
                                  key=key).images
    a, b = run(jax.random.key(3)), run(jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, run(jax.random.key(4)))
    np.testing.assert_allclose(jax.jit(run)(jax.random.key(3)), a, rtol=1e-5, atol=1e-6)


def test_objective_algebra_and_closed_forms():
    x = jnp.asarray(np.random.default_rng(0).random((2, 4, 4, 3)), jnp.float32)
    obj = fv.channel(jnp.arange(3), layer=IDENT) + 2.0 * fv.neuron(jnp.asarray([0, 2]),
                                                                   layer=IDENT)
    assert obj.batch == 6                                   # Cartesian product 3 x 2
    args = obj.combinations()
    np.testing.assert_array_equal(args[0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(args[1], [0, 2, 0, 2, 0, 2])
    got = obj.score(None, None, x, (1, 2))
    want = x[..., 1].mean((1, 2)) + 2.0 * x[:, 2, 2, 2]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    deep = fv.layer(IDENT).score(None, None, x, (0,))
    np.testing.assert_allclose(deep, (np.asarray(x) ** 2).reshape(2, -1).mean(1), rtol=1e-6)
    v = np.array([1.0, 0.0, 0.0], np.float32)
    d = fv.direction(v, layer=IDENT).score(None, None, x, (jnp.asarray(v),))
    t = np.asarray(x).mean((1, 2))
    cos = t[:, 0] / np.linalg.norm(t, axis=1)
    np.testing.assert_allclose(d, t[:, 0] * np.maximum(cos, 0.1) ** 2, rtol=1e-5)
    neg = (-fv.logit(1)).score(lambda p, z: z.reshape(z.shape[0], -1), None, x, (1,))
    np.testing.assert_allclose(neg, -np.asarray(x).reshape(2, -1)[:, 1])


def test_concept_direction_objective_rises(cnn):
    from xjax.concepts import craft

    x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
    model = craft(cnn.features_fn, cnn.head_fn, nb_concepts=3, patch_size=14)
    bank = model.fit(cnn.params, x)
    obj = fv.concept_objective(bank, [0, 1], features_fn=cnn.features_fn)
    r = fv.optimize(cnn.model_fn, cnn.params, obj, fv.fourier((28, 28, 1)), steps=32,
                    transforms=fv.lucid((28, 28)), key=jax.random.key(0))
    s = np.asarray(r.scores)
    assert np.all(s[-4:].mean(0) > s[:4].mean(0))


def test_transforms_shapes_and_identities():
    x = jnp.asarray(np.random.default_rng(0).random((1, 20, 20, 3)), jnp.float32)
    k = jax.random.key(0)
    assert fv.jitter(5)(k, x, 0.0).shape == (1, 16, 16, 3)
    np.testing.assert_allclose(fv.scale((1.0,))(k, x, 0.0), x, atol=1e-5)
    np.testing.assert_allclose(fv.rotate((0,))(k, x, 0.0), x, atol=1e-5)
    crops = fv.random_crops((10, 10), nb_crops=5)(k, x, 0.5)
    assert crops.shape == (5, 10, 10, 3)
    np.testing.assert_array_equal(crops, fv.random_crops((10, 10), nb_crops=5)(k, x, 0.5))
    assert fv.lucid((12, 12))(k, x, 0.0).shape == (1, 12, 12, 3)


def test_shipped_magnitude_is_the_sample_photo_average():
    with np.load("xjax/featviz/magnitude_sample_photos.npz") as f:
        shipped = f["magnitude"]
    np.testing.assert_allclose(shipped, _compute_sample_photo_magnitude(), rtol=1e-4)
    # natural images: the radial profile falls with frequency
    prof = fv.radial_profile(shipped[0], np.array([0.02, 0.05, 0.1, 0.2, 0.4]))
    assert np.all(np.diff(prof) < 0)


def test_bad_input_errors(cnn):
    with pytest.raises(ValueError, match="shape"):
        fv.maco((28, 28))
    with pytest.raises(ValueError, match="magnitude"):
        fv.maco((28, 28, 1), magnitude=jnp.ones((1, 28, 10)))
    with pytest.raises(ValueError, match="steps"):
        fv.optimize(cnn.model_fn, cnn.params, fv.logit(0), fv.fourier((8, 8, 1)), steps=0,
                    key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        fv.optimize(cnn.model_fn, cnn.params, fv.logit(0), fv.fourier((8, 8, 1)), key=None)
    with pytest.raises(TypeError, match="index"):
        fv.logit(1.5)


def test_directory_magnitude_reads_a_user_folder(tmp_path):
    from PIL import Image

    from xjax.data import resize_center_crop, sample_photos

    photos = sample_photos(["coffee", "chelsea"])
    for p in photos:
        Image.fromarray(p.image).save(tmp_path / f"{p.name}.png")
    mag = fv.directory_magnitude(str(tmp_path), size=64)
    x = np.stack([resize_center_crop(p.image, 64) for p in photos]).astype(np.float32)
    np.testing.assert_allclose(mag, fv.natural_magnitude(x), rtol=1e-5)
    assert mag.shape == (3, 64, 33)


def test_new_directions_of_the_same_shapes_compile_nothing(cnn):
    """Issue 24: MACO compiled again for every Lens class. The loop is one jitted program with
    the objective's arguments as inputs: new directions (the next class) reuse it when the
    parameterization and transforms are the same objects, and the default optimizer and
    transforms are cached, so a repeated default call compiles nothing either."""
    compiles = [0]

    def listen(name, secs, **kw):
        compiles[0] += name == "/jax/core/compile/backend_compile_duration"

    pz = fv.maco((28, 28, 1))
    crops = fv.random_crops((28, 28), nb_crops=2)
    rng = np.random.default_rng(0)
    layer = cnn.features_fn
    width = layer(cnn.params, jnp.zeros((1, 28, 28, 1))).shape[-1]
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        counts, images = [], []
        for seed in range(3):
            v = rng.normal(size=(2, width))
            before = compiles[0]
            r = fv.optimize(cnn.model_fn, cnn.params, fv.direction(v, layer=layer), pz, steps=2,
                            transforms=crops, key=jax.random.key(0))
            images.append(np.asarray(r.images))
            before_default = compiles[0]
            fv.optimize(cnn.model_fn, cnn.params, fv.logit(jnp.arange(2)), pz, steps=2,
                        key=jax.random.key(seed))
            counts.append((before_default - before, compiles[0] - before_default))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert counts[0][0] > 0 and counts[0][1] > 0, counts
    assert counts[1:] == [(0, 0), (0, 0)], counts
    assert not np.allclose(images[0], images[1])    # same key: only the directions changed
