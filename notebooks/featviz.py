# %% [markdown]
# # Feature visualization: Fourier and MACO
#
# Feature visualization synthesizes an image that maximizes an objective (a logit, a channel, a
# direction in activation space). The parameterization decides what images are reachable:
#
# - **Fourier** (Lucid): the image is a whitened spectrum, optimized with random jitter, scale
#   and rotation (`fv.lucid`).
# - **MACO** (Fel et al., 2023): the Fourier *magnitude* is fixed to that of natural images and
#   only the *phase* is optimized, which keeps the result natural-looking on large models; its
#   transparency map tells which pixels the objective used.
#
# Here on the Fashion-MNIST CNN (fast on a CPU); `experiments/featviz_maco.py` runs the ImageNet
# version on EfficientNet-Lite0.

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

import xjax

fv = xjax.featviz
SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
model = xjax.models.small_cnn(pretrained="fashion_mnist")
steps = 16 if SMALL else 256
classes = np.array([1, 5, 8])                                # trouser, sandal, bag

# %% [markdown]
# ## One optimization per parameterization
#
# `fv.optimize` runs the whole optimization as one compiled scan, for all the objectives at
# once (one image per class here). Objectives compose arithmetically, e.g.
# `fv.logit(classes) + 0.5 * fv.channel(...)`.

# %%
maco = fv.optimize(model.model_fn, model.params, fv.logit(classes), fv.maco((56, 56, 1)),
                   steps=steps, key=jax.random.key(0),
                   transforms=fv.random_crops((28, 28), nb_crops=8, box_start=0.9, box_end=0.5))
fourier = fv.optimize(model.model_fn, model.params, fv.logit(classes), fv.fourier((28, 28, 1)),
                      steps=steps, key=jax.random.key(0), transforms=fv.lucid((28, 28)))
print("MACO objective, first and last steps:", np.asarray(maco.scores)[[0, -1]].round(2))

# %% [markdown]
# ## The images
#
# Rows: MACO, Fourier, MACO's transparency (where the objective's gradient concentrated).

# %%
fig, axes = plt.subplots(3, len(classes), figsize=(2 * len(classes), 6))
for j, k in enumerate(classes):
    axes[0, j].imshow(np.asarray(maco.images[j, ..., 0]), cmap="gray")
    axes[0, j].set_title(model.class_names[int(k)], fontsize=9)
    axes[1, j].imshow(np.asarray(fourier.images[j, ..., 0]), cmap="gray")
    axes[2, j].imshow(fv.transparency_alpha(np.asarray(maco.transparency[j])), cmap="magma")
for ax in axes.ravel():
    ax.set_axis_off()
plt.show()
