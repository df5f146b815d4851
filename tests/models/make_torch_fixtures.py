"""Write the PyTorch checkpoint fixtures used by test_torch_reader.py (needs torch; run once).

    python tests/models/make_torch_fixtures.py

Every tensor is a closed-form function of ``arange`` so the test can rebuild the expected
values with NumPy alone. Both on-disk formats are written: zip (default) and legacy.
"""

import collections
import os


def state():
    import torch  # only this script needs torch; the tests read the files it wrote

    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8.0 - 1.0
    shared = torch.arange(10, dtype=torch.float64) * 0.5
    return collections.OrderedDict([
        ("conv.weight", base),
        ("transposed", base.transpose(0, 2)),              # non-contiguous strides
        ("view_offset", shared[3:7]),                      # storage offset, shared storage
        ("view_full", shared),
        ("half", (torch.arange(6, dtype=torch.float32) / 4).to(torch.float16)),
        ("bf16", (torch.arange(6, dtype=torch.float32) / 4 - 0.5).to(torch.bfloat16)),
        ("count", torch.tensor(7, dtype=torch.int64)),     # 0-d
        ("mask", torch.arange(5) % 2 == 0),
        ("bytes", torch.arange(4, dtype=torch.uint8) * 60),
        ("param", torch.nn.Parameter(torch.ones(2, 2) * 3.0)),
    ])


if __name__ == "__main__":
    import torch

    here = os.path.join(os.path.dirname(__file__), "data")
    os.makedirs(here, exist_ok=True)
    torch.save(state(), os.path.join(here, "fixture_zip.pth"))
    torch.save(state(), os.path.join(here, "fixture_legacy.pth"),
               _use_new_zipfile_serialization=False)
    print("written to", here)
