"""Test configuration: 8 fake CPU devices and strict promotion, set before JAX starts."""

import os

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XJAX_COMPILE_CACHE"] = "off"   # entry points called in-process leave JAX's config be
# the command line's --batch-size default ("auto": measured, cached under ~/.cache) is fixed to
# 32 so that tests are deterministic; tests/test_tune.py runs the measured path on a temp cache
os.environ["XJAX_BATCH_SIZE"] = "32"
os.environ["XJAX_TUNE_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FASHION_MNIST_PRESENT = all(
    os.path.exists(os.path.join("/usr/share/datasets/fashion-mnist", f))
    for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"))


@pytest.fixture(scope="session")
def lite0():
    """The pretrained EfficientNet-Lite0 (loaded once per session)."""
    import xjax

    return xjax.models.efficientnet_lite0()


@pytest.fixture(scope="session")
def lite0_state_dict():
    import xjax
    from xjax.models._efficientnet import _weights_path

    return xjax.models.load_torch_checkpoint(_weights_path())


@pytest.fixture(scope="session")
def fmnist_cnn():
    import xjax

    return xjax.models.small_cnn(pretrained="fashion_mnist")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
