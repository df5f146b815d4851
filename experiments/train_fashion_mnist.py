"""Train ``xjax.models.small_cnn`` on Fashion-MNIST and write the shipped weights.

    python experiments/train_fashion_mnist.py [--epochs 10] [--source-dir DIR]

Writes ``xjax/models/weights/small_cnn_fashion_mnist.npz`` (float16, read back as float32) and a
JSON next to it with the test accuracy of exactly those stored weights. Resumable: checkpoints
go to ``runs/small_cnn_fashion_mnist`` after every epoch.
"""

import argparse
import json
import os
import time

import jax
import numpy as np
import optax

from xjax.data import fashion_mnist_arrays
from xjax.models import small_cnn
from xjax.models._small_cnn import _WEIGHTS_DIR, flat_params
from xjax.train import evaluate, fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--checkpoint-dir", default="runs/small_cnn_fashion_mnist")
    args = parser.parse_args()

    x, y = fashion_mnist_arrays("train", source_dir=args.source_dir)
    xt, yt = fashion_mnist_arrays("test", source_dir=args.source_dir)
    model = small_cnn(key=jax.random.key(args.seed))
    steps = args.epochs * (len(x) // args.batch_size)
    optimizer = optax.adamw(optax.cosine_decay_schedule(args.lr, steps), weight_decay=1e-4)
    t0 = time.time()
    state = fit(model.model_fn, model.params, x, y, optimizer=optimizer, epochs=args.epochs,
                batch_size=args.batch_size, key=jax.random.key(args.seed + 1),
                checkpoint_dir=args.checkpoint_dir, eval_data=(xt, yt))
    seconds = time.time() - t0

    weights = {k: v.astype(np.float16) for k, v in flat_params(jax.device_get(state.params)).items()}
    os.makedirs(_WEIGHTS_DIR, exist_ok=True)
    np.savez_compressed(os.path.join(_WEIGHTS_DIR, "small_cnn_fashion_mnist.npz"), **weights)
    # Score exactly what is shipped: the float16 weights as small_cnn() reads them back.
    shipped = small_cnn(pretrained="fashion_mnist")
    accuracy = evaluate(shipped.model_fn, shipped.params, xt, yt)
    info = {"test_accuracy": accuracy, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "optimizer": "adamw(cosine, wd=1e-4)", "seed": args.seed,
            "train_seconds_this_run": round(seconds, 1), "history": state.history,
            "weights_dtype": "float16", "jax": jax.__version__}
    with open(os.path.join(_WEIGHTS_DIR, "small_cnn_fashion_mnist.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps({k: info[k] for k in ("test_accuracy", "epochs")}))


if __name__ == "__main__":
    main()
