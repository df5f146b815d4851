"""EfficientNet-Lite0: parity with an independent float64 NumPy network (and torch where
installed), real classifications of the bundled photos, the features/head split, input errors."""

import math

import jax
import numpy as np
import pytest

import xjax

# (repeats, kernel, stride, expand, in, out): EfficientNet-B0's table (Tan & Le 2019, Table 1)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


def _pad_same(x, k, s):
    pads = []
    for i in x.shape[1:3]:
        p = max((math.ceil(i / s) - 1) * s + k - i, 0)
        pads.append((p // 2, p - p // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv(x, w_oihw, s, depthwise=False):
    """float64 conv by accumulating shifted slices; x NHWC, torch OIHW weights."""
    k = w_oihw.shape[-1]
    x = _pad_same(x, k, s)
    n, h, w, c = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = 0.0
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
            if depthwise:
                out = out + patch * w_oihw[:, 0, i, j]
            else:
                out = out + patch @ w_oihw[:, :, i, j].T
    return out


def _bn(x, sd, p):
    g, b, m, v = (sd[f"{p}.{n}"].astype(np.float64)
                  for n in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + 1e-3) * g + b


def _relu6(x):
    return np.clip(x, 0, 6)


def numpy_lite0(sd, images):
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    h = (images.astype(np.float64) * 255 - 127) / 128
    h = _relu6(_bn(_conv(h, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    b = 0
    for repeats, _k, s, e, _cin, _cout in STAGES:
        for r in range(repeats):
            p = f"_blocks.{b}."
            inp, stride = h, (s if r == 0 else 1)
            if e != 1:
                h = _relu6(_bn(_conv(h, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
            h = _relu6(_bn(_conv(h, sd[p + "_depthwise_conv.weight"], stride, True), sd, p + "_bn1"))
            h = _bn(_conv(h, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
            if stride == 1 and inp.shape[-1] == h.shape[-1]:
                h = h + inp
            b += 1
    h = _relu6(_bn(_conv(h, sd["_conv_head.weight"], 1), sd, "_bn1"))
    return h.mean(axis=(1, 2)) @ sd["_fc.weight"].T + sd["_fc.bias"]


@pytest.fixture(scope="module")
def photos128():
    photos = xjax.data.sample_photos(["coffee", "chelsea"])
    return np.stack([xjax.data.resize_center_crop(p.image, 128) for p in photos])


def _float32_logits(model, x):
    # GPUs default to TF32 for float32 convolutions/matmuls (about 1e-3 relative error);
    # parity is a float32 property, so ask for full float32 precision.
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(model.model_fn)(model.params, x))


def test_logits_match_float64_numpy_reference(lite0, lite0_state_dict, photos128):
    ours = _float32_logits(lite0, photos128)
    ref = numpy_lite0(lite0_state_dict, photos128)
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


def test_logits_match_torch(lite0, lite0_state_dict, photos128):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    sd = {k: torch.from_numpy(np.array(v)) for k, v in lite0_state_dict.items()}

    def conv(x, w, s, groups=1):
        k = w.shape[-1]
        pads = []
        for i in x.shape[2:]:
            p = max((math.ceil(i / s) - 1) * s + k - i, 0)
            pads.append((p // 2, p - p // 2))
        x = F.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
        return F.conv2d(x, w, stride=s, groups=groups)

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-3)

    x = (torch.from_numpy(photos128).permute(0, 3, 1, 2) * 255 - 127) / 128
    h = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    b = 0
    for repeats, _k, s, e, _cin, _cout in STAGES:
        for r in range(repeats):
            p, inp, stride = f"_blocks.{b}.", h, (s if r == 0 else 1)
            if e != 1:
                h = F.relu6(bn(conv(h, sd[p + "_expand_conv.weight"], 1), p + "_bn0"))
            h = F.relu6(bn(conv(h, sd[p + "_depthwise_conv.weight"], stride, h.shape[1]), p + "_bn1"))
            h = bn(conv(h, sd[p + "_project_conv.weight"], 1), p + "_bn2")
            if stride == 1 and inp.shape[1] == h.shape[1]:
                h = h + inp
            b += 1
    h = F.relu6(bn(conv(h, sd["_conv_head.weight"], 1), "_bn1"))
    ref = F.linear(h.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"]).numpy()
    ours = _float32_logits(lite0, photos128)
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_classifies_the_sample_photos(lite0):
    photos = xjax.data.sample_photos(["coffee", "chelsea", "camera"])
    x = np.stack([xjax.data.resize_center_crop(p.image, 224) for p in photos])
    logits = np.asarray(jax.jit(lite0.model_fn)(lite0.params, x))
    names = [lite0.class_names[i] for i in logits.argmax(-1)]
    assert names[0] == "espresso"
    assert logits[1].argmax() in (281, 282, 283, 284, 285)  # tabby, tiger, Persian, Siamese, Egyptian
    assert names[2] == "tripod"
    probs = np.asarray(jax.nn.softmax(logits))
    assert probs[1, 281:286].sum() > 0.5


def test_class_names():
    names = xjax.models.imagenet_class_names()
    assert len(names) == 1000
    assert (names[281], names[285], names[652], names[967]) == (
        "tabby", "Egyptian cat", "military uniform", "espresso")


def test_features_head_split(lite0, photos128):
    f = jax.jit(lite0.features_fn)(lite0.params, photos128)
    assert f.shape == (2, 4, 4, 1280)
    assert float(f.min()) >= 0.0
    np.testing.assert_allclose(lite0.head_fn(lite0.params, f),
                               jax.jit(lite0.model_fn)(lite0.params, photos128), rtol=1e-5,
                               atol=1e-5)


def test_bad_inputs_name_the_argument(lite0):
    x = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="channel-first"):
        lite0.model_fn(lite0.params, x.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="rank 4"):
        lite0.model_fn(lite0.params, x[0])
    with pytest.raises(TypeError, match="dtype uint8"):
        lite0.model_fn(lite0.params, x.astype(np.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        xjax.models.efficientnet_lite0(num_classes=10)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_official_weights_classify_the_sample_photos(name):
    m = xjax.models.get_model(name)
    size = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert m.input_shape == (size, size, 3)
    photos = xjax.data.sample_photos(["coffee", "chelsea", "camera"])
    x = np.stack([xjax.data.resize_center_crop(p.image, size) for p in photos])
    logits = np.asarray(jax.jit(m.model_fn)(m.params, x))
    assert m.class_names[logits[0].argmax()] == "espresso"
    assert logits[1].argmax() in (281, 282, 283, 284, 285)
    assert m.class_names[logits[2].argmax()] == "tripod"
    np.testing.assert_allclose(m.head_fn(m.params, m.features_fn(m.params, x[:1])),
                               logits[:1], rtol=1e-4, atol=1e-4)
