"""Toy models with closed-form explanations, shared by the attribution tests."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

H, W, C, K, F = 8, 8, 3, 4, 5


def conv_features(params, x):
    """ReLU conv features ``f32[B, 8, 8, F]`` (SAME 3x3)."""
    a = lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(a + params["bias"].reshape(1, 1, 1, -1))


def conv_head(params, a):
    return a.mean(axis=(1, 2)) @ params["dense"]


def conv_model(params, x):
    return conv_head(params, conv_features(params, x))


def conv_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"conv": jnp.asarray(rng.normal(size=(3, 3, C, F)) * 0.5, jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(F,)) * 0.1, jnp.float32),
            "dense": jnp.asarray(rng.normal(size=(F, K)), jnp.float32)}


def linear_model(params, x):
    """``f(x)_k = sum_{hwc} x_hwc W_hwck``."""
    return jnp.einsum("nhwc,hwck->nk", x, params)


def linear_params(seed=0, shape=(H, W, C, K)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def images(n=4, seed=1, shape=(H, W, C)):
    return jnp.asarray(np.random.default_rng(seed).random((n,) + shape), jnp.float32)


def load_script(relpath):
    """A script of the repository (benchmarks/, tools/) imported as a module by its path."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relpath)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
