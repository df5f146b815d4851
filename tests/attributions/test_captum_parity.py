"""Parity with Captum on the same weights (runs only where torch and captum are installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xjax

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

pytestmark = [pytest.mark.parity,
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require"),
              pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")]

A = xjax.attributions


class TorchNet(torch.nn.Module):
    def __init__(self, conv_w, conv_b, fc_w, fc_b):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4 * 8 * 8, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(conv_w.transpose(3, 2, 0, 1)))
            self.conv.bias.copy_(torch.from_numpy(conv_b))
            # our flatten is NHWC; torch flattens NCHW: permute the dense rows to match
            w = fc_w.reshape(8, 8, 4, 3).transpose(2, 0, 1, 3).reshape(-1, 3)
            self.fc.weight.copy_(torch.from_numpy(w.T.copy()))
            self.fc.bias.copy_(torch.from_numpy(fc_b))

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


def jax_features(p, x):
    a = jax.lax.conv_general_dilated(x, p["conv_w"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(a + p["conv_b"].reshape(1, 1, 1, -1))


def jax_head(p, a):
    return a.reshape(a.shape[0], -1) @ p["fc_w"] + p["fc_b"][None]


def jax_model(p, x):
    return jax_head(p, jax_features(p, x))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    p = {"conv_w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32) * 0.5,
         "conv_b": rng.normal(size=(4,)).astype(np.float32) * 0.1,
         "fc_w": rng.normal(size=(256, 3)).astype(np.float32) * 0.2,
         "fc_b": rng.normal(size=(3,)).astype(np.float32) * 0.1}
    net = TorchNet(**p).eval()
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    y = np.array([0, 2])
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(net(xt).detach().numpy(), jax_model(jp, jnp.asarray(x)), rtol=1e-5,
                               atol=1e-5)
    return net, jp, x, y, xt, torch.from_numpy(y)


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def test_gradient_methods(setup):
    net, p, x, y, xt, yt = setup
    cases = [
        (captum_attr.Saliency(net).attribute(xt, target=yt, abs=True),
         A.saliency(jax_model, channel_reduction=None)),
        (captum_attr.InputXGradient(net).attribute(xt, target=yt),
         A.gradient_input(jax_model, channel_reduction=None)),
        (captum_attr.IntegratedGradients(net).attribute(xt, target=yt, n_steps=20,
                                                        method="riemann_middle"),
         A.integrated_gradients(jax_model, steps=20, rule="riemann_middle",
                                channel_reduction=None)),
        (captum_attr.IntegratedGradients(net).attribute(xt, target=yt, n_steps=20,
                                                        method="riemann_left"),
         A.integrated_gradients(jax_model, steps=20, rule="riemann_left",
                                channel_reduction=None)),
        # Captum's "riemann_trapezoid" uses the nodes linspace(0, 1, n) with weights 1/n (ends
        # halved), which sum to (n - 1) / n; the trapezoid rule's weights 1/(n-1) sum to 1
        # (completeness). Same nodes, so the maps differ by exactly that factor.
        (captum_attr.IntegratedGradients(net).attribute(xt, target=yt, n_steps=20,
                                                        method="riemann_trapezoid") * 20 / 19,
         A.integrated_gradients(jax_model, steps=20, channel_reduction=None)),
        (captum_attr.GuidedBackprop(net).attribute(xt, target=yt),
         A.guided_backprop(jax_model, channel_reduction=None)),
        (captum_attr.Deconvolution(net).attribute(xt, target=yt),
         A.deconvnet(jax_model, channel_reduction=None)),
    ]
    for theirs, ours in cases:
        np.testing.assert_allclose(ours(p, jnp.asarray(x), jnp.asarray(y)), nhwc(theirs),
                                   rtol=1e-4, atol=1e-5)


def test_occlusion(setup):
    net, p, x, y, xt, yt = setup
    theirs = captum_attr.Occlusion(net).attribute(xt, target=yt, sliding_window_shapes=(3, 4, 4),
                                                  strides=(3, 2, 2), baselines=0.0)
    ours = A.occlusion(jax_model, patch_size=4, patch_stride=2)(p, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(ours, nhwc(theirs)[..., 0], rtol=1e-4, atol=1e-5)


def test_grad_cam(setup):
    net, p, x, y, xt, yt = setup
    theirs = captum_attr.LayerGradCam(net, net.relu).attribute(xt, target=yt)
    ours = A.grad_cam(jax_features, jax_head)(p, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(ours, np.maximum(theirs.detach().numpy()[:, 0], 0), rtol=1e-4,
                               atol=1e-5)
