import jax
import numpy as np
import pytest

import xjax
from xjax.models._bridge import init_module
from xjax.models._resnet import BasicBlock, ResNet


def _tiny_resnet(key):
    return init_module(lambda rngs: ResNet(BasicBlock, (1, 1, 1, 1), num_classes=5, rngs=rngs),
                       jax.random.key(key))


def test_state_dict_round_trip_gives_identical_outputs():
    a, b = _tiny_resnet(0), _tiny_resnet(1)
    sd = xjax.models.to_state_dict(a)
    # torchvision names and layouts
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer1.0.bn1.running_var"].shape == (64,)
    assert sd["fc.weight"].shape == (5, 512)
    xjax.models.load_state_dict(b, sd)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))


def test_load_state_dict_errors():
    m = _tiny_resnet(0)
    sd = xjax.models.to_state_dict(m)
    missing = dict(sd)
    del missing["fc.bias"]
    with pytest.raises(ValueError, match="missing key 'fc.bias'"):
        xjax.models.load_state_dict(m, missing)
    wrong = dict(sd, **{"fc.weight": np.zeros((6, 512), np.float32)})
    with pytest.raises(ValueError, match="'fc.weight' has shape"):
        xjax.models.load_state_dict(m, wrong)
    extra = dict(sd, **{"fc2.weight": np.zeros((1,), np.float32)})
    with pytest.raises(ValueError, match="match nothing"):
        xjax.models.load_state_dict(m, extra)
