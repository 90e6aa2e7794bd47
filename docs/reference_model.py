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


class StackedDenoiser(nn.Module):
    """dae-dist's stacked denoising autoencoder (--model stacked), named as its weights files are:
    encoders.j / decoders.j for layer j. With tied weights there is no decoders.j.weight and decoder
    j multiplies by encoders.j.weight (the encoder's weight transposed). Build it from a weights
    file's metadata: StackedDenoiser.from_metadata(safe_open(path, "pt").metadata())."""

    def __init__(self, widths, activation="sigmoid", tied=False):
        super().__init__()
        import torch
        self.act = torch.sigmoid if activation == "sigmoid" else torch.relu
        self.tied = tied
        self.encoders = nn.ModuleList(nn.Linear(widths[j], widths[j + 1]) for j in range(len(widths) - 1))
        if tied:
            self.decoders = nn.ModuleList(_TiedDecoder(self.encoders[j], widths[j]) for j in range(len(widths) - 1))
        else:
            self.decoders = nn.ModuleList(nn.Linear(widths[j + 1], widths[j]) for j in range(len(widths) - 1))

    @staticmethod
    def from_metadata(meta):
        widths = [int(meta["input_size"])] + [int(w) for w in meta["hidden"].split(",")]
        return StackedDenoiser(widths, meta["activation"], meta["tied_weights"] == "true")

    def encode(self, x):
        for encoder in self.encoders:
            x = self.act(encoder(x))
        return x

    def forward(self, x):                      # x: [n, 784] in [0, 1]
        import torch
        y = self.encode(x)
        for j in reversed(range(len(self.decoders))):
            y = self.decoders[j](y)
            y = torch.sigmoid(y) if j == 0 else self.act(y)
        return y


class _TiedDecoder(nn.Module):
    def __init__(self, encoder, out_features):
        super().__init__()
        self.encoder = [encoder]               # a list: not a submodule, so no duplicate state_dict keys
        import torch
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, y):
        return y @ self.encoder[0].weight + self.bias
