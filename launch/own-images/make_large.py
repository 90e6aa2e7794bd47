"""A large noisy RGB photo for timing tiled denoising and its memory (docs/own-images.md).

    python3 launch/own-images/make_large.py OUT.png [--width 4000] [--height 3000] [--sigma 0.1]

scikit-image's `chelsea` photo (public domain), scaled up with Lanczos to width x height, plus
gaussian noise of the given sigma (seed 0), clipped and saved as an 8-bit RGB PNG. The clean
scaled photo is saved next to it as OUT-clean.png, for `dae-dist denoise --reference`.
"""
import argparse
import pathlib

import numpy as np
from PIL import Image
from skimage import data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clean = Image.fromarray(data.chelsea()).resize((args.width, args.height), Image.LANCZOS)
    out = pathlib.Path(args.out)
    clean.save(out.with_name(out.stem + "-clean.png"))
    rng = np.random.default_rng(args.seed)
    pixels = np.asarray(clean, dtype=np.float64) / 255 + args.sigma * rng.standard_normal((args.height, args.width, 3))
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(out)
    print(f"wrote {out} and {out.with_name(out.stem + '-clean.png')}: {args.width}x{args.height} RGB, sigma {args.sigma}")


if __name__ == "__main__":
    main()
