# %% [markdown]
# # Certified bounds and EVA
#
# `xjax.bounds` turns a model function into a bound function over boxes of inputs (IBP, CROWN,
# CROWN-IBP, alpha-CROWN), by interpreting its jaxpr. EVA uses those bounds to attribute: how
# much can an adversary gain inside an l-inf ball when a region is left free?

# %%
import os

import jax
import jax.numpy as jnp
import numpy as np

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
model = xjax.models.small_cnn(pretrained="fashion_mnist")
x, _ = xjax.data.fashion_mnist_arrays("test")
x = jnp.asarray(x[:2])
eps = 0.01
widths = {}
for method in ("ibp", "crown_ibp"):
    g = jax.jit(xjax.bounds.bounds(model.model_fn, method=method))
    b = g(model.params, jnp.clip(x - eps, 0, 1), jnp.clip(x + eps, 0, 1))
    widths[method] = float((b.upper - b.lower).mean())
    logits = model.model_fn(model.params, x)
    assert bool(jnp.all((b.lower <= logits + 1e-4) & (logits <= b.upper + 1e-4)))
print("mean logit interval width:", widths)
assert widths["crown_ibp"] <= widths["ibp"] + 1e-6

# %% [markdown]
# EVA maps (certified with CROWN-IBP), next to saliency.

# %%
y = model.model_fn(model.params, x).argmax(-1)
eva = xjax.attributions.eva(model.model_fn, epsilon=0.05, grid_size=4 if SMALL else 7)
maps = {"eva": eva(model.params, x, y), "saliency": xjax.attributions.saliency(model.model_fn)(
    model.params, x, y)}
fig = xjax.plots.method_grid(np.asarray(x), {k: np.asarray(v) for k, v in maps.items()})
print({k: v.shape for k, v in maps.items()})
