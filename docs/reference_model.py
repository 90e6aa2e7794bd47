"""The reference PyTorch ConvDenoiser that dae-dist reproduces layer for layer.

dae-dist's weights files use this model's state_dict names and shapes:

    import torch
    from safetensors.torch import load_file
    model = ConvDenoiser()
    model.load_state_dict(load_file("runs/<run>/model.safetensors"), strict=True)

Check a trained file against dae-dist's own outputs with Tests/reference/check_pytorch_load.py.
"""
import torch.nn as nn


class ConvDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),     # encoder.0 .1 .2
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))    # encoder.3 .4 .5
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 2, stride=2), nn.ReLU(),                 # decoder.0 .1
            nn.ConvTranspose2d(32, 1, 2, stride=2), nn.Sigmoid())               # decoder.2 .3

    def forward(self, x):
        return self.decoder(self.encoder(x))
