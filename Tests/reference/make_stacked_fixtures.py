"""Reference values for the stacked denoising autoencoder, computed with PyTorch from the class in
docs/reference_model.py, committed as Tests/DAETests/Fixtures/stacked.safetensors and compared by
`swift test` (StackedReferenceTests): no torch is needed at test time.

Two small models, 16 -> 10 -> 6 on a batch of 3: untied with sigmoid units (MSE) and tied with
ReLU units (BCE on the pixel layer). For each, with PyTorch's own initialisation (seeded):
  - deep mode (the image autoencoder / fine-tuning): output, code, loss and every gradient;
  - layer mode for layer 2 (pre-training it on layer 1's clean codes): the masked codes as
    input (every third value zeroed), the reconstruction, the loss (MSE) and layer 2's gradients.
Run from the repository root: python3 Tests/reference/make_stacked_fixtures.py"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs"))
from reference_model import StackedDenoiser  # noqa: E402

torch.manual_seed(0)
out = {}
for name, activation, tied, loss_name in [("untied", "sigmoid", False, "mse"), ("tied", "relu", True, "bce")]:
    model = StackedDenoiser([16, 10, 6], activation, tied)
    for k, v in model.state_dict().items():
        out[f"{name}.param.{k}"] = v.clone()
    x = torch.rand(3, 16)
    target = torch.rand(3, 16)
    out[f"{name}.x"] = x
    out[f"{name}.target"] = target
    # deep mode
    y = model(x)
    loss = torch.nn.functional.mse_loss(y, target, reduction="sum") if loss_name == "mse" \
        else torch.nn.functional.binary_cross_entropy(y, target, reduction="sum")
    model.zero_grad()
    loss.backward()
    out[f"{name}.deep.output"] = y.detach()
    out[f"{name}.deep.code"] = model.encode(x).detach()
    out[f"{name}.deep.loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        out[f"{name}.deep.grad.{k}"] = p.grad.clone()
    # layer mode, layer 2: input = layer 1's clean code with every third value zeroed
    with torch.no_grad():
        code1 = model.act(model.encoders[0](x))
    noisy = code1.clone().reshape(-1)
    noisy[::3] = 0
    noisy = noisy.reshape(code1.shape)
    model.zero_grad()
    h = model.act(model.encoders[1](noisy))
    z = model.act(model.decoders[1](h))          # decoders above the first end in the hidden activation
    layer_loss = torch.nn.functional.mse_loss(z, code1, reduction="sum")
    layer_loss.backward()
    out[f"{name}.layer2.target"] = code1
    out[f"{name}.layer2.input"] = noisy
    out[f"{name}.layer2.output"] = z.detach()
    out[f"{name}.layer2.loss"] = layer_loss.detach().reshape(1)
    for k, p in model.named_parameters():
        if p.grad is not None and (k.startswith("encoders.1") or k.startswith("decoders.1")):
            out[f"{name}.layer2.grad.{k}"] = p.grad.clone()

out = {k: v.contiguous().float() for k, v in out.items()}
save_file(out, "Tests/DAETests/Fixtures/stacked.safetensors", metadata={"torch": torch.__version__})
print(f"wrote {len(out)} tensors")
