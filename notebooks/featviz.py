# %% [markdown]
# # Feature visualization: Fourier and MACO
#
# MACO keeps a natural-image Fourier magnitude fixed and optimizes only the phase; Fourier
# (Lucid) optimizes a whitened spectrum. Objectives compose: `fv.logit(...) + 0.5 * ...`.
# Here on the Fashion-MNIST CNN (fast on a CPU); `experiments/featviz_maco.py` runs the
# ImageNet version on EfficientNet-Lite0.

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
maco = fv.optimize(model.model_fn, model.params, fv.logit(classes), fv.maco((56, 56, 1)),
                   steps=steps, key=jax.random.key(0),
                   transforms=fv.random_crops((28, 28), nb_crops=8, box_start=0.9, box_end=0.5))
fourier = fv.optimize(model.model_fn, model.params, fv.logit(classes), fv.fourier((28, 28, 1)),
                      steps=steps, key=jax.random.key(0), transforms=fv.lucid((28, 28)))
print("MACO objective, first and last steps:", np.asarray(maco.scores)[[0, -1]].round(2))

# %%
fig, axes = plt.subplots(3, len(classes), figsize=(2 * len(classes), 6))
for j in range(len(classes)):
    axes[0, j].imshow(np.asarray(maco.images[j, ..., 0]), cmap="gray")
    axes[1, j].imshow(np.asarray(fourier.images[j, ..., 0]), cmap="gray")
    axes[2, j].imshow(fv.transparency_alpha(np.asarray(maco.transparency[j])), cmap="magma")
for ax in axes.ravel():
    ax.set_axis_off()
plt.close("all")
assert maco.images.shape == (3, 56, 56, 1)
