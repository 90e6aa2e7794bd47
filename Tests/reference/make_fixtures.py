"""Reference values from PyTorch for `swift test` (no torch needed at test time).

Run from the repository root:
    python3 -m pip install torch==2.13.0+cpu safetensors   # the CPU build
    python3 Tests/reference/make_fixtures.py

Writes Tests/DAETests/Fixtures/reference.safetensors with, for fixed weights and inputs:
  weights.<state_dict key>      the reference ConvDenoiser's parameters (torch's default init, seed 0)
  input [2,1,12,8], target [2,1,12,8]   a noisy batch and its clean images (non-square on purpose)
  output [2,1,12,8]             model(input)
  code [2,64,3,2]               model.encoder(input)
  loss.mse, loss.bce            the losses (mean over all pixels)
  grad.mse.<key>, grad.bce.<key>   d loss / d parameter
  adam.param0 [16], adam.grad{1,2,3} [16], adam.param{1,2,3} [16]
                                torch.optim.Adam(lr=1e-3) after 1, 2, 3 steps with those gradients
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


class ConvDenoiser(nn.Module):
    """The reference model, exactly as in docs/reference_model.py."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 2, stride=2), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def main():
    torch.manual_seed(0)
    model = ConvDenoiser()
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 12, 8, generator=g)
    target[0, 0, :3] = 0.0                     # flat regions: ties in max-pooling after ReLU
    noisy = torch.clamp(target + 0.5 * torch.randn(2, 1, 12, 8, generator=g), 0, 1)

    out = {}
    for key, value in model.state_dict().items():
        out["weights." + key] = value.detach().clone()
    out["input"] = noisy
    out["target"] = target
    with torch.no_grad():
        out["output"] = model(noisy)
        out["code"] = model.encoder(noisy)

    for name, loss_fn in [("mse", F.mse_loss), ("bce", F.binary_cross_entropy)]:
        model.zero_grad()
        loss = loss_fn(model(noisy), target)
        loss.backward()
        out["loss." + name] = loss.detach().reshape(1)
        for key, p in model.named_parameters():
            out[f"grad.{name}.{key}"] = p.grad.detach().clone()

    p = torch.linspace(-1, 1, 16).requires_grad_(True)
    out["adam.param0"] = p.detach().clone()
    opt = torch.optim.Adam([p], lr=1e-3)
    for step in (1, 2, 3):
        grad = torch.sin(torch.arange(16, dtype=torch.float32) * step) * (10.0 ** (step - 3))
        p.grad = grad.clone()
        opt.step()
        out[f"adam.grad{step}"] = grad
        out[f"adam.param{step}"] = p.detach().clone()

    out = {k: v.contiguous().to(torch.float32) for k, v in out.items()}
    path = os.path.join("Tests", "DAETests", "Fixtures", "reference.safetensors")
    save_file(out, path, metadata={"torch": torch.__version__})
    print(f"wrote {path} ({os.path.getsize(path)} bytes) with torch {torch.__version__}")


if __name__ == "__main__":
    main()
