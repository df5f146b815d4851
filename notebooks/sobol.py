# %% [markdown]
# # Sobol attribution in depth: what it estimates, what each setting changes, what it costs
#
# Sobol attribution (Fel et al., NeurIPS 2021) treats the explanation as a global sensitivity
# analysis. The image is cut into a `grid_size x grid_size` grid of cells; each cell `i` gets a
# random mask value `M_i ~ U[0, 1]`; the perturbed image `tau(x, upsample(M))` (by default
# `x * M`, "inpainting" towards black) goes through the model, and the score `Y` is the logit of
# the explained class. The map is the **total Sobol index** of each cell,
#
# `S_Ti = E[Var(Y | M_~i)] / Var(Y)`,
#
# the share of the score's variance that involves cell `i`, interactions with other cells
# included. It is estimated from a pick-and-freeze design: `nb_design` quasi-Monte Carlo points
# for two matrices `A`, `B` and one matrix `C_i` per cell (`A` with column `i` from `B`), so one
# image costs `nb_design x (d + 2)` model calls, `d = grid_size^2`.
#
# We use the shipped Fashion-MNIST CNN so that every cell runs in seconds on a laptop CPU.

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
A, M = xjax.attributions, xjax.metrics
model = xjax.models.small_cnn(pretrained="fashion_mnist")
x, labels = xjax.data.fashion_mnist_arrays("test")
x = x[: 4 if SMALL else 16]
y = jax.jit(model.model_fn)(model.params, x).argmax(-1)
names = [model.class_names[int(k)] for k in y]
print("explaining:", names)

# %% [markdown]
# ## The grid: resolution against cost
#
# A finer grid localizes better but costs more calls (and each index is estimated from the same
# number of designs, so it is noisier). At 28 x 28 pixels, cells of 3 to 7 pixels are sensible.

# %%
grids = (4, 7) if SMALL else (4, 7, 9)
nb = 16 if SMALL else 32
by_grid = {f"grid {g} ({nb * (g * g + 2)} calls)":
           np.asarray(A.sobol(model.model_fn, grid_size=g, nb_design=nb)(model.params, x, y))
           for g in grids}
xjax.plots.methods(np.asarray(x[:3]), {k: v[:3] for k, v in by_grid.items()}, titles=names[:3])

# %% [markdown]
# ## The design: quasi-Monte Carlo converges faster
#
# With the same number of designs, a Sobol' sequence covers the unit cube more evenly than
# independent uniform draws, so the estimate settles sooner. We measure it: the rank correlation
# of each map with a reference computed from many more designs, as `nb_design` grows.

# %%
def spearman(a, b):
    ra = np.argsort(np.argsort(a.reshape(len(a), -1), axis=1), axis=1)
    rb = np.argsort(np.argsort(b.reshape(len(b), -1), axis=1), axis=1)
    return float(np.mean([np.corrcoef(p, q)[0, 1] for p, q in zip(ra, rb, strict=True)]))


g = 7
reference = np.asarray(A.sobol(model.model_fn, grid_size=g, nb_design=64 if SMALL else 512)(
    model.params, x, y))
sizes = (4, 8, 16) if SMALL else (4, 8, 16, 32, 64)
curves = {}
for sampler in ("sobol", "halton", "uniform"):
    kw = {"design_key": jax.random.key(1)} if sampler == "uniform" else {}
    curves[sampler] = [spearman(np.asarray(A.sobol(model.model_fn, grid_size=g, nb_design=n,
                                                    sampler=sampler, **kw)(model.params, x, y)),
                                reference) for n in sizes]
fig, ax = plt.subplots(figsize=(4.5, 3))
for sampler, c in curves.items():
    ax.plot(sizes, c, marker="o", label=sampler)
ax.set_xscale("log", base=2)
ax.set_xlabel("nb_design")
ax.set_ylabel("rank correlation with the reference")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The estimator and the perturbation
#
# Jansen's estimator (the default) is the usual choice for total indices; Homma-Saltelli, Janon,
# Glen-Isaacs and Saltelli are there to compare. The perturbation decides what "removing" a cell
# means: `inpainting` multiplies by the mask (towards black, which is also Fashion-MNIST's
# background), `blurring` mixes with a blurred copy, `amplitude` adds `(M - 1/2) sigma`.

# %%
variants = {"jansen, inpainting": {},
            "homma, inpainting": {"estimator": "homma"},
            "jansen, blurring": {"perturbation": "blurring", "sigma": 3.0},
            "jansen, amplitude": {"perturbation": "amplitude"}}
by_variant = {k: np.asarray(A.sobol(model.model_fn, grid_size=g, nb_design=nb, **kw)(
    model.params, x, y)) for k, kw in variants.items()}
base = by_variant["jansen, inpainting"]
for k, v in by_variant.items():
    print(f"{k:20s} rank correlation with jansen/inpainting: {spearman(v, base):.3f}")
xjax.plots.methods(np.asarray(x[:3]), {k: v[:3] for k, v in by_variant.items()}, titles=names[:3])

# %% [markdown]
# ## Is it faithful? Deletion against other methods
#
# Deletion removes pixels in the order of the map and integrates the score: lower is better.
# Sobol's maps are compared with saliency and RISE at a similar number of calls.

# %%
calls = nb * (g * g + 2)
others = {"sobol": A.sobol(model.model_fn, grid_size=g, nb_design=nb),
          "rise": A.rise(model.model_fn, nb_samples=calls, grid_size=g),
          "saliency": A.saliency(model.model_fn)}
key = jax.random.key(0)
deletion = M.deletion(model.model_fn, steps=10)
for name, e in others.items():
    maps = e(model.params, x, y, key=key if name in A.STOCHASTIC else None)
    score = np.asarray(deletion(model.params, x, y, maps))
    print(f"{name:9s} deletion {score.mean():8.3f} +- {score.std() / np.sqrt(len(score)):.3f}")

# %% [markdown]
# A Deletion score on a handful of images is noisy; `experiments/sobol_fidelity.py` runs the
# paper's comparison at scale and `experiments/README.md` reports it. In your own code the
# explainer is a pure function: `jax.jit` it, `jax.vmap` it over parameter sets, or run it over
# every device with `xjax.runs.per_device`.
