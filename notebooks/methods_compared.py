# %% [markdown]
# # Attribution methods compared: every registered method on the same images
#
# `xjax.attributions.REGISTRY` lists every attribution method by name, with whether it needs the
# features/head split (the CAMs), whether it is stochastic (needs a `key`) and its
# hyperparameters with the papers' defaults. `xjax.attributions.from_name(name, model, **kw)`
# builds any of them on an `xjax.typing.Model`. Here: all of them on the Fashion-MNIST CNN,
# their maps side by side, their cost in seconds per image, and two fidelity scores.

# %%
import os
import time

import jax
import numpy as np

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
A, M = xjax.attributions, xjax.metrics
for name, method in A.REGISTRY.items():
    flags = ", ".join(f for f, on in (("features/head", method.split),
                                      ("stochastic", method.stochastic)) if on)
    print(f"{name:22s} {method.summary}" + (f"  [{flags}]" if flags else ""))

# %% [markdown]
# The hyperparameters of one method, read from its factory's signature:

# %%
for h in A.hyperparameters("rise").values():
    print(f"{h.name:26s} {h.annotation:14s} default {h.default!r}")

# %% [markdown]
# ## The maps
#
# Small sample counts in the tutorial's test run; the defaults otherwise (Greedy-AS is reduced in
# both: at its defaults one 28 x 28 image costs about 10^7 gradient calls).

# %%
model = xjax.models.small_cnn(pretrained="fashion_mnist")
x, _ = xjax.data.fashion_mnist_arrays("test")
x = x[: 2 if SMALL else 8]
y = jax.jit(model.model_fn)(model.params, x).argmax(-1)
small = {"nb_samples": 8, "nb_design": 8, "steps": 8, "grid_size": 4}
settings = {name: ({k: v for k, v in small.items() if k in A.hyperparameters(name)} if SMALL
                   else {}) for name in A.METHODS}
settings["greedy_as"] = {"grid_size": 4, "nb_samples": 8 if SMALL else 64, "search_steps": 2,
                         "pgd_steps": 2 if SMALL else 5, "fraction_per_step": 0.25}
key = jax.random.key(0)


def jitted(explainer):
    return jax.jit(lambda p, a, b, k: explainer(p, a, b, key=k))


maps, seconds = {}, {}
for name in A.METHODS:
    e = jitted(A.from_name(name, model, **settings[name]))
    k = key if name in A.STOCHASTIC else None
    jax.block_until_ready(e(model.params, x, y, k))          # compile
    t = time.perf_counter()
    maps[name] = np.asarray(jax.block_until_ready(e(model.params, x, y, k)))
    seconds[name] = (time.perf_counter() - t) / len(x)
xjax.plots.methods(np.asarray(x[:2]), {k: v[:2] for k, v in maps.items()},
                   titles=[model.class_names[int(k)] for k in y[:2]])

# %% [markdown]
# ## Cost and fidelity
#
# Deletion (lower is better) and Insertion (higher is better) integrate the score while pixels
# are removed from, or revealed onto, a black image in the order of the map. A few images give
# noisy scores: read the table as an illustration, not a ranking.

# %%
deletion, insertion = M.deletion(model.model_fn), M.insertion(model.model_fn)
print(f"{'method':22s} {'s / image':>10s} {'deletion':>9s} {'insertion':>9s}")
for name, m in maps.items():
    d = float(np.mean(deletion(model.params, x, y, m)))
    i = float(np.mean(insertion(model.params, x, y, m)))
    print(f"{name:22s} {seconds[name]:10.4f} {d:9.3f} {i:9.3f}")
