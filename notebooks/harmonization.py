# %% [markdown]
# # Harmonization: align a model's saliency with human importance maps
#
# The harmonization loss adds, to cross-entropy, the distance between the model's normalized
# saliency and human maps at every level of a binomial pyramid. Here on decoy-patch
# Fashion-MNIST, where a corner square predicts the label and "human" maps cover the garment.

# %%
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xjax

H = xjax.harmonization
SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
x, y = xjax.data.fashion_mnist_arrays("train")
x, y = x[:2000], y[:2000]
xd, yd, corner = xjax.data.decoy_patch(x, y, correlation=0.95, seed=0)
maps = H.garment_maps(xd)
model = xjax.models.small_cnn(num_classes=2)
step = jax.jit(H.make_train_step(model.model_fn, optax.adam(1e-3), lambda_harmonization=1.0))
params, opt_state = model.params, optax.adam(1e-3).init(model.params)
batch = 64
for i in range(10 if SMALL else 200):
    start = (i * batch) % (len(xd) - batch)
    sl = slice(start, start + batch)
    params, opt_state, loss = step(params, opt_state, jnp.asarray(xd[sl]), jnp.asarray(yd[sl]),
                                   jnp.asarray(maps[sl]), jnp.ones((batch,), bool))
print("last loss:", float(loss))

# %% [markdown]
# Alignment with the human maps (Spearman / human ceiling, and Dice of the top 10%).

# %%
sal = xjax.attributions.saliency(model.model_fn)
pred = jax.jit(model.model_fn)(params, xd[:64]).argmax(-1)
al = H.alignment(sal(params, xd[:64], pred), maps[:64])
print(al)
assert np.isfinite(float(loss))
