# %% [markdown]
# # Metrics: fidelity, stability and complexity of explanations
#
# The shipped Fashion-MNIST CNN, three explainers, and the metrics of `xjax.metrics`:
# Deletion / Insertion (causal fidelity), MuFidelity (correlation of attribution sums with score
# drops), average stability (how much a map moves under small noise) and complexity.

# %%
import os

import jax
import numpy as np

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
model = xjax.models.small_cnn(pretrained="fashion_mnist")
x, y_true = xjax.data.fashion_mnist_arrays("test")
x = x[: 8 if SMALL else 64]
y = jax.jit(model.model_fn)(model.params, x).argmax(-1)

A, M = xjax.attributions, xjax.metrics
explainers = {"saliency": A.saliency(model.model_fn),
              "gradient_input": A.gradient_input(model.model_fn),
              "occlusion": A.occlusion(model.model_fn, patch_size=4, patch_stride=4)}
maps = {k: e(model.params, x, y) for k, e in explainers.items()}
xjax.plots.methods(np.asarray(x[:3]), {k: np.asarray(v[:3]) for k, v in maps.items()},
                   titles=[model.class_names[int(k)] for k in y[:3]])

# %% [markdown]
# ## Fidelity and complexity
#
# Each metric is a factory returning `metric(params, x, y, maps) -> f32[N]`, one score per
# image, jit-able like the explainers. Deletion and Insertion integrate the score while pixels
# are removed (or revealed) in map order; MuFidelity correlates the map's sum over random
# subsets with the score drop when those subsets are removed; complexity is the entropy of the
# normalized map (lower: more concentrated).

# %%
metrics = {
    "deletion (lower)": M.deletion(model.model_fn),
    "insertion (higher)": M.insertion(model.model_fn),
    "mufidelity (higher)": M.mu_fidelity(model.model_fn, grid_size=7,
                                         nb_samples=32 if SMALL else 200),
}
table = {}
for name, maps_ in maps.items():
    table[name] = {m: float(f(model.params, x, y, maps_, **({"key": jax.random.key(0)}
                                                            if "mufidelity" in m else {})).mean())
                   for m, f in metrics.items()}
    table[name]["complexity"] = float(M.complexity(maps_).mean())
for name, row in table.items():
    print(f"{name:16s}", "  ".join(f"{k} {v:7.3f}" for k, v in row.items()))

# %% [markdown]
# ## Stability
#
# Average stability: the mean l2 distance between the map of x and the maps of x + U[0, 0.1).

# %%
stab = M.average_stability(explainers["saliency"], nb_samples=4 if SMALL else 20)
print("saliency stability:", float(stab(model.params, x, y, key=jax.random.key(0)).mean()))
