# %% [markdown]
# # Concepts: CRAFT and the holistic comparison of extractors
#
# CRAFT factorizes the activations of image crops of one class into concepts (NMF), ranks them
# by total Sobol indices or Gradient x Input in concept space, and maps them back onto the
# image through the implicit derivative of the NMF encoder.

# %%
import os

import jax
import numpy as np

import xjax

C = xjax.concepts
SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
model = xjax.models.small_cnn(pretrained="fashion_mnist")
x, _ = xjax.data.fashion_mnist_arrays("test")
x = x[:2000]
pred = np.asarray(jax.jit(model.model_fn)(model.params, x)).argmax(1)
cls = 1                                                       # Trouser
xc = x[pred == cls][: 24 if SMALL else 200]

craft = C.craft(model.features_fn, model.head_fn, nb_concepts=4 if SMALL else 8, patch_size=10,
                nb_design=8 if SMALL else 32)
bank = craft.fit(model.params, xc)
sobol = craft.importance(model.params, bank, xc[:8], cls)
gi = craft.importance(model.params, bank, xc[:8], cls, method="gradient_input")
print("global Sobol importance:", np.round(np.asarray(sobol.mean(0)), 3))
print("global GI importance:   ", np.round(np.asarray(gi.mean(0)), 3))

# %% [markdown]
# The crops that express each concept most, and a concept attribution map.

# %%
order = np.argsort(-np.asarray(sobol.mean(0)))
crops = np.stack([np.asarray(bank.crops)[np.argsort(-np.asarray(bank.codes[:, c]))[:6]]
                  for c in order])
cam = craft.attribute(model.params, bank, xc[:2], int(order[0]))
print("concept map:", cam.shape)
xjax.plots.concept_grid(crops, titles=[f"concept {c}" for c in order])

# %% [markdown]
# The holistic table: six extractors on the same activations.

# %%
acts = jax.jit(model.features_fn)(model.params, xc[:16])
rank = 4
rows = C.holistic_report(acts, {"nmf": C.nmf(rank), "pca": C.pca(rank), "kmeans": C.kmeans(rank)},
                         score_fn=lambda a: model.head_fn(model.params, a[None])[0, cls],
                         key=jax.random.key(0))
print(C.report_markdown(rows))
print("PCA reconstructs at least as well as NMF (it is the optimal rank-r reconstruction):",
      rows[1]["relative_l2"] <= rows[0]["relative_l2"] + 1e-6)
