"""Reference values from PyTorch for DnCNN, compared by `swift test` (DnCNNTests): no torch is
needed at test time.

Run from the repository root (torch's CPU build: pip install torch==2.13.0+cpu safetensors):
    python3 Tests/reference/make_dncnn_fixtures.py

The class is the one in docs/pytorch-models.md (its first python block is run here). Writes
Tests/DAETests/Fixtures/dncnn.safetensors with, for each case <name> below, torch's default
initialisation (seed 0) and a fixed noisy batch (sides that no pooling model takes):
  <name>.weights.<state_dict key>    the parameters
  <name>.input, <name>.target        [n, C, H, W]: a noisy batch and its clean images
  <name>.output                      model(input) = input - body(input)
  <name>.loss.mse                    F.mse_loss(output, target)
  <name>.grad.mse.<key>              d loss / d parameter
  <name>.adam.<key>                  the parameters after one torch.optim.Adam(lr=1e-3) step
"""
import os
import re

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
with open(os.path.join(ROOT, "docs", "pytorch-models.md")) as f:
    exec(re.search(r"```python\n(.*?)```", f.read(), re.S).group(1))

# name, channels, depth, width, input shape
CASES = [("gray", 1, 4, 8, (2, 1, 9, 7)), ("rgb", 3, 3, 5, (1, 3, 6, 11))]

out = {}
for name, channels, depth, width, shape in CASES:
    torch.manual_seed(0)
    model = DnCNN(channels, depth, width)  # noqa: F821
    g = torch.Generator().manual_seed(1)
    target = torch.rand(*shape, generator=g)
    noisy = torch.clamp(target + 0.2 * torch.randn(*shape, generator=g), 0, 1)
    for key, value in model.state_dict().items():
        out[f"{name}.weights.{key}"] = value.detach().clone()
    out[f"{name}.input"], out[f"{name}.target"] = noisy, target
    with torch.no_grad():
        out[f"{name}.output"] = model(noisy)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.mse_loss(model(noisy), target)
    loss.backward()
    out[f"{name}.loss.mse"] = loss.detach().reshape(1)
    for key, p in model.named_parameters():
        out[f"{name}.grad.mse.{key}"] = p.grad.detach().clone()
    opt.step()
    for key, p in model.named_parameters():
        out[f"{name}.adam.{key}"] = p.detach().clone()
out = {k: v.contiguous().to(torch.float32) for k, v in out.items()}
path = os.path.join(ROOT, "Tests", "DAETests", "Fixtures", "dncnn.safetensors")
save_file(out, path, metadata={"torch": torch.__version__})
print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes) with torch {torch.__version__}")
