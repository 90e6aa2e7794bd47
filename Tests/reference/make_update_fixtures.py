"""Reference values from PyTorch for the update stage: torch.nn.utils.clip_grad_norm_ and
torch.optim.AdamW, for `swift test` (no torch needed at test time).

Run from the repository root:
    python3 -m pip install torch==2.13.0+cpu safetensors   # the CPU build
    python3 Tests/reference/make_update_fixtures.py

Writes Tests/DAETests/Fixtures/update.safetensors. Two parameter tensors, w [4, 8] and b [8], so
that the clipping norm is the global one over both; the flat values are w's then b's:
  param0 [40], grad{1,2,3} [40]        the starting parameters and the gradients of 3 steps
  clip.param{1,2,3} [40]               clip_grad_norm_(max_norm=0.5) before each of 3 steps of
                                       AdamW(lr=1e-2, weight_decay=0.1) (the norms, 2 to 4, are clipped)
  clip.exp_avg, clip.exp_avg_sq [40]   AdamW's moments after the 3 steps
  clip.coefficient [3]                 max_norm / (norm + 1e-6) per step, as torch computes it
  noclip.param3 [40]                   the same with max_norm=100 (never clips: the coefficient is 1)
"""
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
w0, b0 = torch.randn(4, 8), torch.randn(8)
grads = [(torch.randn(4, 8) * 0.5, torch.randn(8) * 0.5) for _ in range(3)]


def run(max_norm):
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    opt = torch.optim.AdamW([w, b], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    params, coefficients = [], []
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm)
        coefficients.append(max_norm / (float(norm) + 1e-6))
        opt.step()
        params.append(torch.cat([w.detach().flatten(), b.detach()]))
    state = [opt.state[w], opt.state[b]]
    moments = {k: torch.cat([state[0][k].flatten(), state[1][k]]) for k in ("exp_avg", "exp_avg_sq")}
    return params, moments, coefficients


clipped, moments, coefficients = run(0.5)
unclipped, _, _ = run(100.0)
tensors = {"param0": torch.cat([w0.flatten(), b0])}
for i, (gw, gb) in enumerate(grads):
    tensors[f"grad{i + 1}"] = torch.cat([gw.flatten(), gb])
    tensors[f"clip.param{i + 1}"] = clipped[i]
tensors["clip.exp_avg"], tensors["clip.exp_avg_sq"] = moments["exp_avg"], moments["exp_avg_sq"]
tensors["clip.coefficient"] = torch.tensor(coefficients)
tensors["noclip.param3"] = unclipped[2]
out = os.path.join("Tests", "DAETests", "Fixtures", "update.safetensors")
save_file({k: v.contiguous() for k, v in tensors.items()}, out)
print("wrote", out, "coefficients", [round(c, 4) for c in coefficients])
