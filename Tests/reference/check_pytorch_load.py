"""Loads a dae-dist weights file into the reference PyTorch model (strict) and reports its test MSE.

    python3 Tests/reference/check_pytorch_load.py runs/<run>/model.safetensors [data/mnist]

Needs torch (CPU build: pip install torch==2.13.0+cpu) and safetensors.
"""
import gzip
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs"))
from reference_model import ConvDenoiser  # noqa: E402


def main():
    path = sys.argv[1]
    data_dir = sys.argv[2] if len(sys.argv) > 2 else "data/mnist"
    model = ConvDenoiser()
    model.load_state_dict(load_file(path), strict=True)
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    x = torch.from_numpy(images[:1000].astype(np.float32)) / 255
    with torch.no_grad():
        mse = torch.mean((model(x) - x) ** 2).item()
    print(f"{path}: loaded strictly into the reference ConvDenoiser; clean-input MSE on 1000 test images {mse:.6f}")


if __name__ == "__main__":
    main()
