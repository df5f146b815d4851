# %% [markdown]
# # Your own model: a pure JAX function, a Flax nnx module, a Flax linen module, PyTorch weights
#
# Every explainer in xjax takes a **model function** `model_fn(params, x) -> logits`: pure, with
# the parameters as its first argument (never closed over), images `f32[N, H, W, C]` in [0, 1]
# and channels last. The normalization your network expects (ImageNet mean and standard
# deviation, say) happens *inside* `model_fn`. Class activation maps (Grad-CAM) and concepts
# (CRAFT) also need the network split in two: `features_fn(params, x) -> f32[N, h, w, F]` and
# `head_fn(params, a) -> logits`, with `head_fn(params, features_fn(params, x)) ==
# model_fn(params, x)`. `xjax.typing.Model` bundles the three functions, the parameters, the
# input shape and the class names.
#
# This tutorial wraps four kinds of model and explains the same photo with each.

# %%
import os

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import xjax

SMALL = os.environ.get("XJAX_NOTEBOOK_SMALL") == "1"
photo = xjax.data.sample_photos(["chelsea"])[0]
x = xjax.data.resize_center_crop(photo.image, 32)[None]      # f32[1, 32, 32, 3] in [0, 1]
print(x.shape, x.dtype, float(x.min()), float(x.max()))

# %% [markdown]
# ## 1. A pure JAX function
#
# The most direct form: a function of a parameter pytree. Here a two-layer convolutional net
# with random weights (any weights work the same way).

# %%
MEAN, STD = jnp.array([0.485, 0.456, 0.406]), jnp.array([0.229, 0.224, 0.225])


def features(params, x):
    z = (x - MEAN) / STD                                     # normalization inside the model
    for w in (params["conv1"], params["conv2"]):
        z = jax.nn.relu(jax.lax.conv_general_dilated(
            z, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return z                                                 # f32[N, 32, 32, 16]


def head(params, a):
    return a.mean(axis=(1, 2)) @ params["dense"]             # global average pool, then dense


def model_fn(params, x):
    return head(params, features(params, x))


k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
params = {"conv1": jax.random.normal(k1, (3, 3, 3, 8)) * 0.3,
          "conv2": jax.random.normal(k2, (3, 3, 8, 16)) * 0.2,
          "dense": jax.random.normal(k3, (16, 5))}
pure = xjax.typing.Model(model_fn, params, features, head, (32, 32, 3),
                         class_names=("a", "b", "c", "d", "e"))
y = model_fn(params, x).argmax(-1)
saliency = xjax.attributions.saliency(pure.model_fn)(pure.params, x, y)
cam = xjax.attributions.grad_cam(pure.features_fn, pure.head_fn)(pure.params, x, y)
xjax.plots.methods(np.asarray(x), {"saliency": np.asarray(saliency), "grad_cam": np.asarray(cam)},
                   titles=["pure JAX"])

# %% [markdown]
# ## 2. A Flax nnx module
#
# `xjax.models.from_nnx(module)` splits a module into `(model_fn, params)`, where `params` is
# the module's whole state (batch statistics included). With `features` and `head` methods,
# `xjax.models.model_from_nnx` builds the full `Model` and puts the module in inference mode.

# %%
class TinyNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.out = nnx.Linear(16, 5, rngs=rngs)

    def features(self, x):
        return jax.nn.relu(self.norm(self.conv((x - MEAN) / STD)))

    def head(self, a):
        return self.out(a.mean(axis=(1, 2)))

    def __call__(self, x):
        return self.head(self.features(x))


nnx_model = xjax.models.model_from_nnx(TinyNet(nnx.Rngs(0)), input_shape=(32, 32, 3))
y = nnx_model.model_fn(nnx_model.params, x).argmax(-1)
ig = xjax.attributions.integrated_gradients(nnx_model.model_fn, steps=8 if SMALL else 50)
cam = xjax.attributions.grad_cam(nnx_model.features_fn, nnx_model.head_fn)
xjax.plots.methods(np.asarray(x), {"integrated gradients": np.asarray(ig(nnx_model.params, x, y)),
                                   "grad_cam": np.asarray(cam(nnx_model.params, x, y))},
                   titles=["Flax nnx"])

# %% [markdown]
# ## 3. A Flax linen module
#
# `xjax.models.from_linen(module, variables, method=...)` gives `(model_fn, params)`; the
# `method` argument picks the part of the network, so the same variables serve the features and
# the head.

# %%
class LinenNet(linen.Module):
    def setup(self):
        self.conv = linen.Conv(16, (3, 3))
        self.out = linen.Dense(5)

    def features(self, x):
        return jax.nn.relu(self.conv((x - MEAN) / STD))

    def head(self, a):
        return self.out(a.mean(axis=(1, 2)))

    def __call__(self, x):
        return self.head(self.features(x))


net = LinenNet()
variables = net.init(jax.random.key(1), x)
fn, variables = xjax.models.from_linen(net, variables)
features_fn, _ = xjax.models.from_linen(net, variables, method=LinenNet.features)
head_fn, _ = xjax.models.from_linen(net, variables, method=LinenNet.head)
linen_model = xjax.typing.Model(fn, variables, features_fn, head_fn, (32, 32, 3))
y = fn(variables, x).argmax(-1)
occlusion = xjax.attributions.occlusion(fn, patch_size=4, patch_stride=4)
xjax.plots.attribution(x[0], np.asarray(occlusion(variables, x, y))[0], sign="all",
                       title="Flax linen: occlusion (signed)")

# %% [markdown]
# ## 4. An ImageNet ResNet-50 from torchvision weights you hold
#
# xjax reads PyTorch checkpoints without PyTorch and without unpickling arbitrary objects
# (`xjax.models.load_torch_checkpoint` accepts tensors and plain containers only, and refuses
# anything else by name). Download torchvision's `resnet50-11ad3fa6.pth` (IMAGENET1K_V2) or
# `resnet50-0676ba61.pth` (V1) yourself and point `XJAX_RESNET50_WEIGHTS` at it; without it this
# cell builds the same architecture with random weights, so the maps below mean nothing.

# %%
path = os.environ.get("XJAX_RESNET50_WEIGHTS")
side = 64 if SMALL else 224
if path:
    resnet = xjax.models.resnet50(state_dict=xjax.models.load_torch_checkpoint(path),
                                  input_shape=(side, side, 3))
else:
    print("XJAX_RESNET50_WEIGHTS is not set: random ResNet-50 weights (the maps are meaningless)")
    resnet = xjax.models.resnet50(key=jax.random.key(0), input_shape=(side, side, 3))
xr = xjax.data.resize_center_crop(photo.image, side)[None]
y = jax.jit(resnet.model_fn)(resnet.params, xr).argmax(-1)
print("predicted:", resnet.class_names[int(y[0])])        # ImageNet names with 1000 classes
cam = xjax.attributions.grad_cam(resnet.features_fn, resnet.head_fn)(resnet.params, xr, y)
xjax.plots.attribution(xr[0], np.asarray(cam)[0], title="ResNet-50: Grad-CAM")

# %% [markdown]
# ## 5. The same model on the command line
#
# `xjax explain --model package.module:function` imports `function` and calls it with no
# arguments; it must return an `xjax.typing.Model`. Put, for example, this in `my_models.py`:
#
# ```python
# import xjax
#
# def resnet50():
#     state = xjax.models.load_torch_checkpoint("/data/weights/resnet50-11ad3fa6.pth")
#     return xjax.models.resnet50(state_dict=state)
# ```
#
# and run `xjax explain --model my_models:resnet50 --method grad_cam,sobol --images photos/`
# from the folder that holds `my_models.py` (or with it on `PYTHONPATH`).
