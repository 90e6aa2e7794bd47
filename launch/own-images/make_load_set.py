"""A folder of many same-size PNG images for timing data loading (`dae-dist bench --what load`).

    python3 launch/own-images/make_load_set.py SETS OUT [--count 10000] [--side 256]

Cuts random side x side RGB crops (with random flips) out of the photos in SETS/rgb/train, the
folder make_sets.py writes, and saves them as OUT/img-NNNNN.png. Real-photo content keeps the PNG
sizes realistic (a flat or random image would compress far better or far worse).
"""
import argparse
import pathlib

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets")
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sources = sorted(pathlib.Path(args.sets, "rgb", "train").glob("*"))
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sources]
    photos = [p for p in photos if p.shape[0] >= args.side and p.shape[1] >= args.side]
    if not photos:
        raise SystemExit(f"no photo in {args.sets}/rgb/train is at least {args.side} pixels on each side")
    rng = np.random.default_rng(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - args.side + 1)
        left = rng.integers(photo.shape[1] - args.side + 1)
        crop = photo[top:top + args.side, left:left + args.side]
        if rng.integers(2):
            crop = crop[:, ::-1]
        if rng.integers(2):
            crop = crop[::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(out / f"img-{i:05d}.png")


if __name__ == "__main__":
    main()
