"""Loads a dae-dist weights file into the reference PyTorch model (strict) and reports its test MSE
(the convolutional model, or the stacked one when the file's metadata says StackedDenoiser).

    python3 Tests/reference/check_pytorch_load.py runs/<run>/model.safetensors [data/mnist]

Needs torch (CPU build: pip install torch==2.13.0+cpu) and safetensors.
"""
import gzip
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs"))
from reference_model import ConvDenoiser, StackedDenoiser  # noqa: E402


def main():
    path = sys.argv[1]
    data_dir = sys.argv[2] if len(sys.argv) > 2 else "data/mnist"
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    stacked = meta.get("model") == "StackedDenoiser"
    model = StackedDenoiser.from_metadata(meta) if stacked else ConvDenoiser()
    model.load_state_dict(load_file(path), strict=True)
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    x = torch.from_numpy(images[:1000].astype(np.float32)) / 255
    if stacked:
        x = x.reshape(-1, 784)
    with torch.no_grad():
        mse = torch.mean((model(x) - x) ** 2).item()
    print(f"{path}: loaded strictly into the reference {type(model).__name__}; clean-input MSE on 1000 test images {mse:.7g}")


if __name__ == "__main__":
    main()
