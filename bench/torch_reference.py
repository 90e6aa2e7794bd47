"""PyTorch reference of the same model and recipe, for launch/bench: samples/s of training.

    python3 bench/torch_reference.py --np 1 --threads 2 --batch 20 --samples 4000
    python3 bench/torch_reference.py --np 2 --threads 1 --batch 20 --samples 4000   # DDP, gloo
    python3 bench/torch_reference.py --model stacked --threads 2 --batch 100 --samples 6000

Trains on the first --samples MNIST images with gaussian:0.5 noise, MSE, Adam lr 1e-3; one
warm-up pass over 10% of the samples, then times one pass. With --np > 1, DistributedDataParallel
over gloo, each process taking batch/np samples per step. Prints one line: samples/s.
--model stacked: the stacked model's fine-tuning instead (dae-dist train --model stacked
--pretrain-epochs 0): the 784-1000-1000-1000 autoencoder and its mirror, sigmoid units, mask:0.25
noise (each pixel set to 0 with probability 0.25), MSE.
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "docs"))
from reference_model import ConvDenoiser, StackedDenoiser  # noqa: E402


def load(samples):
    with gzip.open(os.path.join(os.path.dirname(__file__), "..", "data", "mnist", "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:samples]
    return torch.from_numpy(images.astype(np.float32)) / 255


def run(rank, args, result):
    torch.set_num_threads(args.threads)
    if args.np > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        dist.init_process_group("gloo", rank=rank, world_size=args.np)
    torch.manual_seed(0)
    stacked = args.model == "stacked"
    model = StackedDenoiser([784, 1000, 1000, 1000]) if stacked else ConvDenoiser()
    if args.np > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = load(args.samples)
    if stacked:
        data = data.reshape(-1, 784)
    local = args.batch // args.np

    def one_pass(count):
        for start in range(0, count - args.batch + 1, args.batch):
            x = data[start + rank * local: start + (rank + 1) * local]
            if stacked:
                noisy = x * (torch.rand_like(x) >= 0.25)
            else:
                noisy = torch.clamp(x + 0.5 * torch.randn_like(x), 0, 1)
            opt.zero_grad()
            loss = F.mse_loss(model(noisy), x)
            loss.backward()
            opt.step()

    one_pass(max(args.batch, args.samples // 10))
    if args.np > 1:
        dist.barrier()
    start = time.perf_counter()
    one_pass(args.samples)
    if args.np > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        result.put(args.samples // args.batch * args.batch / seconds)
    if args.np > 1:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["conv", "stacked"], default="conv")
    p.add_argument("--np", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--samples", type=int, default=4000)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    if args.np == 1:
        run(0, args, result)
    else:
        mp.spawn(run, args=(args, result), nprocs=args.np, join=True)
    print(f"{result.get():.0f}")


if __name__ == "__main__":
    main()
