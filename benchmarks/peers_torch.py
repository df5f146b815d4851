"""The PyTorch side of benchmarks/peers.py: the two architectures in PyTorch, their weights and
inputs written for xjax, and Captum's seconds per explained image on them.

    /path/to/torch-venv/bin/python benchmarks/peers_torch.py --out DIR [--models cnn,resnet18]

Runs in an environment with ``torch``, ``captum`` and ``scikit-learn`` (not xjax's:
``pip install torch==2.13.0 captum scikit-learn``). For each model it writes
``DIR/<model>_weights.npz`` (a torchvision-layout state dict of the random initialization,
float32), ``DIR/<model>_inputs.npz`` (the images, NHWC, and
the logits PyTorch computes on them) and ``DIR/captum.json`` (seconds per image per method,
and the model's own forward and forward+backward (to the input only) time per image at the
same batch size).
benchmarks/peers.py loads the same weights into xjax and checks that the logits agree, so the
two libraries are timed on one network.

The settings are issue 25's: CNN 32x32 with batch 64, ResNet-18 224x224 with batch 32;
integrated gradients 50 steps, SmoothGrad 50 samples, occlusion patch 8 (CNN) / 16 (ResNet-18)
with stride equal to the patch, KernelSHAP and LIME 500 samples on an 8x8 grid of superpixels,
Grad-CAM on the last convolutional block. Captum has no RISE or Sobol.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

SETTINGS = {"cnn": {"side": 32, "batch": 64, "n": 8, "patch": 8},
            "resnet18": {"side": 224, "batch": 32, "n": 1, "patch": 16}}


class CNN(nn.Module):
    """conv3x3(32)-ReLU-maxpool2, conv3x3(64)-ReLU-maxpool2, conv3x3(128)-ReLU-maxpool2,
    flatten, dense(128)-ReLU, dense(10): the 3-conv CNN of benchmarks/peers.py."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 128, 128)
        self.fc2 = nn.Linear(128, 10)
        self.pool1, self.pool2, self.pool3 = nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)

    def features(self, x):
        for conv, pool in ((self.conv1, self.pool1), (self.conv2, self.pool2),
                           (self.conv3, self.pool3)):
            x = pool(torch.relu(conv(x)))
        return x

    def forward(self, x):
        # flatten in NHWC order, as xjax does, so that fc1's weights mean the same thing
        a = self.features(x).permute(0, 2, 3, 1).flatten(1)
        return self.fc2(torch.relu(self.fc1(a)))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's parameter names (so xjax.models.resnet18 reads them), on
    images in [0, 1] normalized inside by ImageNet's mean and standard deviation."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(Block(cin, w, stride), Block(w, w, 1)))
            cin = w
        self.fc = nn.Linear(512, 1000)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1),
                             persistent=False)

    def features(self, x):
        # images in [0, 1], ImageNet mean/std inside the network, as xjax.models.resnet18
        x = (x - self.mean) / self.std
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def timed(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def grid_mask(side, cells=8):
    idx = (np.arange(side) * cells // side)
    return torch.as_tensor(idx[:, None] * cells + idx[None, :]).expand(1, 3, side, side)


def captum_rows(model, x, target, s, repeats, only=None):
    from captum import attr

    b, patch = s["batch"], s["patch"]
    mask = grid_mask(s["side"])
    cam_layer = model.pool3 if isinstance(model, CNN) else model.layer4
    methods = {   # name: (attribute(x, target), model calls per image, unit)
        "saliency": (lambda x, t: attr.Saliency(model).attribute(x, target=t), 1, "grad"),
        "gradient_input": (lambda x, t: attr.InputXGradient(model).attribute(x, target=t), 1,
                           "grad"),
        "integrated_gradients": (lambda x, t: attr.IntegratedGradients(model).attribute(
            x, target=t, n_steps=50, internal_batch_size=b), 50, "grad"),
        "smoothgrad": (lambda x, t: attr.NoiseTunnel(attr.Saliency(model)).attribute(
            x, target=t, nt_type="smoothgrad", nt_samples=50, nt_samples_batch_size=b,
            stdevs=0.2), 50, "grad"),
        "occlusion": (lambda x, t: attr.Occlusion(model).attribute(
            x, target=t, sliding_window_shapes=(3, patch, patch), strides=(3, patch, patch),
            perturbations_per_eval=b), (s["side"] // patch) ** 2 + 1, "fwd"),
        # Captum's KernelShap and Lime fit one surrogate per call: one image at a time
        "kernel_shap": (lambda x, t: [attr.KernelShap(model).attribute(
            x[i:i + 1], target=t[i:i + 1], feature_mask=mask, n_samples=500,
            perturbations_per_eval=b) for i in range(len(x))], 500, "fwd"),
        "lime": (lambda x, t: [attr.Lime(model).attribute(
            x[i:i + 1], target=t[i:i + 1], feature_mask=mask, n_samples=500,
            perturbations_per_eval=b) for i in range(len(x))], 500, "fwd"),
        "grad_cam": (lambda x, t: attr.LayerGradCam(model, cam_layer).attribute(x, target=t), 1,
                     "grad"),
    }
    rows = {}
    for name, (fn, calls, unit) in methods.items():
        if only and name not in only:
            continue
        t = timed(lambda fn=fn: fn(x, target), repeats) / len(x)
        rows[name] = {"seconds_per_image": t, "model_calls": calls, "unit": unit}
        print(f"captum {name:22s} {t:10.5f} s/image", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=None)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.machine(), "models": {}}
    try:
        import captum
        result["captum"] = captum.__version__
    except ImportError:
        result["captum"] = None
    for name in args.models.split(","):
        s = SETTINGS[name]
        model = (CNN() if name == "cnn" else ResNet18()).eval()
        if name == "resnet18":              # non-trivial statistics, so that parity means something
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
        np.savez(os.path.join(args.out, f"{name}_weights.npz"), **state)
        rng = np.random.default_rng(0)
        images = rng.random((s["n"], s["side"], s["side"], 3)).astype(np.float32)
        x = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            logits = model(x).numpy()
        np.savez(os.path.join(args.out, f"{name}_inputs.npz"), images=images, logits=logits)
        target = torch.as_tensor(logits.argmax(1))
        xb = torch.as_tensor(rng.random((s["batch"], 3, s["side"], s["side"])).astype(np.float32))

        def fwd(model=model, xb=xb):
            with torch.no_grad():
                model(xb)

        def grad(model=model, xb=xb):       # the input gradient alone, as Captum's and xjax's
            z = xb.clone().requires_grad_(True)          # (.backward() would add the weights')
            torch.autograd.grad(model(z).max(1).values.sum(), z)

        unit = {"fwd": timed(fwd, args.repeats) / s["batch"],
                "grad": timed(grad, args.repeats) / s["batch"]}
        print(f"# torch {name}: forward {unit['fwd'] * 1e3:.3f} ms/img, forward+backward "
              f"{unit['grad'] * 1e3:.3f} ms/img at batch {s['batch']}", flush=True)
        rows = {}
        if result["captum"]:
            rows = captum_rows(model, x, target, s, args.repeats,
                               args.methods.split(",") if args.methods else None)
            for r in rows.values():
                r["overhead_ratio"] = r["seconds_per_image"] / (r["model_calls"] * unit[r["unit"]])
        result["models"][name] = {**s, "unit_seconds": unit, "rows": rows}
    with open(os.path.join(args.out, "captum.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
