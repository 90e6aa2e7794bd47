"""Reference values from PyTorch for the U-Net and the convolutional model with channels and
widths, compared by `swift test` (UNetTests): no torch is needed at test time.

Run from the repository root (torch's CPU build: pip install torch==2.13.0+cpu numpy safetensors):
    python3 Tests/reference/make_unet_fixtures.py

The classes are the ones in docs/pytorch-models.md (its first python block is run here). Writes
Tests/DAETests/Fixtures/unet.safetensors with, for each case <name> below, torch's default
initialisation (seed 0) and a fixed noisy batch:
  <name>.weights.<state_dict key>    the parameters
  <name>.input, <name>.target        [n, C, H, W]: a noisy batch and its clean images
  <name>.output                      model(input)
  <name>.code                        the features: ConvDenoiser's encoder output, UNet's bottleneck
  <name>.loss.mse, <name>.loss.bce   the losses (mean over all values)
  <name>.grad.mse.<key>, <name>.grad.bce.<key>   d loss / d parameter

    python3 Tests/reference/make_unet_fixtures.py --check FOLDER
loads every FOLDER/<name>.safetensors (weights files written by dae-dist's Weights.save, see
UNetTests.testWeightsFileForPyTorch) strictly into the class its metadata names, as the snippet in
docs/pytorch-models.md does, and compares model(input) with FOLDER/<name>.io.safetensors's output.
"""
import glob
import os
import re
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
with open(os.path.join(ROOT, "docs", "pytorch-models.md")) as f:
    exec(re.search(r"```python\n(.*?)```", f.read(), re.S).group(1))

# name, class, channels, widths, input shape
CASES = [
    ("unet", "UNet", 3, [4, 8, 8], (2, 3, 8, 8)),
    ("unet2", "UNet", 1, [3, 5], (2, 1, 6, 10)),
    ("unet5", "UNet", 2, [2, 3, 4, 5, 6], (1, 2, 16, 16)),
    ("conv", "ConvDenoiser", 3, [4, 6], (2, 3, 8, 8)),
]


def make():
    out = {}
    for name, kind, channels, widths, shape in CASES:
        torch.manual_seed(0)
        model = UNet(channels, widths) if kind == "UNet" else ConvDenoiser(channels, widths)  # noqa: F821
        g = torch.Generator().manual_seed(1)
        target = torch.rand(*shape, generator=g)
        target[0, 0, :2] = 0.0                   # flat regions: ties in the max-pools
        noisy = torch.clamp(target + 0.5 * torch.randn(*shape, generator=g), 0, 1)
        for key, value in model.state_dict().items():
            out[f"{name}.weights.{key}"] = value.detach().clone()
        out[f"{name}.input"] = noisy
        out[f"{name}.target"] = target
        with torch.no_grad():
            out[f"{name}.output"] = model(noisy)
            out[f"{name}.code"] = model.encode(noisy)[-1] if kind == "UNet" else model.encoder(noisy)
        for loss_name, loss_fn in [("mse", F.mse_loss), ("bce", F.binary_cross_entropy)]:
            model.zero_grad()
            loss = loss_fn(model(noisy), target)
            loss.backward()
            out[f"{name}.loss.{loss_name}"] = loss.detach().reshape(1)
            for key, p in model.named_parameters():
                out[f"{name}.grad.{loss_name}.{key}"] = p.grad.detach().clone()
    out = {k: v.contiguous().to(torch.float32) for k, v in out.items()}
    path = os.path.join(ROOT, "Tests", "DAETests", "Fixtures", "unet.safetensors")
    save_file(out, path, metadata={"torch": torch.__version__})
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes) with torch {torch.__version__}")


def check(folder):
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*.safetensors")) if not p.endswith(".io.safetensors"))
    assert paths, f"no weights files in {folder}"
    for path in paths:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        model = from_metadata(meta)  # noqa: F821
        model.load_state_dict(load_file(path), strict=True)
        io = load_file(path[: -len(".safetensors")] + ".io.safetensors")
        with torch.no_grad():
            error = (model(io["input"]) - io["output"]).abs().max().item()
        print(f"{path}: {type(model).__name__} {meta['channels']}->{meta['widths']} loaded strictly; "
              f"max |torch - dae-dist| = {error:.2e}")
        assert error < 1e-5, path


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        make()
