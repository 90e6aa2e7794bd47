#!/usr/bin/env python3
"""Classical denoiser baselines on the noisy test images that make_sets.py wrote.

For every test image listed in SETS/manifest.json and every sigma, reads the
clean PNG and the noisy 8-bit PNG (the same files any other denoiser reads),
both scaled to [0, 1], and reports PSNR in dB (data range 1, against the clean
PNG) and wall time of:

  noisy    the noisy input itself
  tv*      skimage.restoration.denoise_tv_chambolle at the weight of TV_GRID
           with the highest PSNR. Picking the weight by PSNR against the clean
           image is an ORACLE choice (it looks at the ground truth); the time
           column is the time of that one run, the grid's total is in the JSON.
  wavelet  skimage.restoration.denoise_wavelet(method="BayesShrink",
           mode="soft", rescale_sigma=True, channel_axis=-1 for RGB); sigma is
           left to the function to estimate (blind).
  bm3d     bm3d.bm3d(noisy, sigma_psd=sigma) for gray, bm3d.bm3d_rgb for RGB:
           the true sigma is given.

Denoiser outputs are clipped to [0, 1] before PSNR (not quantized to 8 bits).
Note the noise was clipped to [0, 1] when the noisy files were made, so it is
not exactly Gaussian near black and white (text pages lose some).

Usage:  python3 classical.py SETS [--json OUT.json] [--threads 1] [--save DIR]
Prints a markdown table; writes SETS/classical.json unless --json says where.
"""
import argparse
import json
import os
import sys
import time

TV_GRID = (0.02, 0.04, 0.06, 0.08, 0.10, 0.13, 0.16, 0.20, 0.25, 0.30, 0.40)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP threads (default 1, to stay light on a shared machine)")
    ap.add_argument("--save", help="also write denoised PNGs (8-bit) under this folder")
    args = ap.parse_args()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(args.threads)

    import numpy as np
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio
    from skimage.restoration import denoise_tv_chambolle, denoise_wavelet
    import bm3d

    sets = os.path.abspath(args.sets)
    with open(os.path.join(sets, "manifest.json")) as f:
        manifest = json.load(f)

    def read(rel):
        return np.asarray(Image.open(os.path.join(sets, rel)), dtype=np.float64) / 255.0

    def psnr(clean, x):
        return float(peak_signal_noise_ratio(clean, np.clip(x, 0, 1), data_range=1.0))

    def timed(fn):
        t = time.perf_counter()
        y = fn()
        return y, time.perf_counter() - t

    results = []
    for rel, info in sorted(manifest["files"].items()):
        if "sigma" not in info or "copy_of" in info:   # graypages' noisy files are the gray ones
            continue
        sigma = info["sigma"]
        clean = read(info["clean"])
        noisy = read(rel)
        rgb = clean.ndim == 3
        ca = -1 if rgb else None
        row = {"image": info["clean"], "noisy_file": rel, "sigma": sigma,
               "shape": list(clean.shape), "psnr": {}, "seconds": {}}
        row["psnr"]["noisy"] = psnr(clean, noisy)
        row["seconds"]["noisy"] = 0.0

        best = None
        grid = {}
        t_grid = 0.0
        for w in TV_GRID:
            y, dt = timed(lambda: denoise_tv_chambolle(noisy, weight=w, channel_axis=ca))
            t_grid += dt
            p = psnr(clean, y)
            grid[str(w)] = p
            if best is None or p > best[0]:
                best = (p, w, dt, y)
        row["psnr"]["tv_oracle"] = best[0]
        row["seconds"]["tv_oracle"] = best[2]
        row["tv_weight"] = best[1]
        row["tv_grid_psnr"] = grid
        row["tv_grid_seconds"] = t_grid
        outs = {"tv_oracle": best[3]}

        y, dt = timed(lambda: denoise_wavelet(noisy, method="BayesShrink", mode="soft",
                                              rescale_sigma=True, channel_axis=ca))
        row["psnr"]["wavelet"] = psnr(clean, y)
        row["seconds"]["wavelet"] = dt
        outs["wavelet"] = y

        if rgb and hasattr(bm3d, "bm3d_rgb"):
            y, dt = timed(lambda: bm3d.bm3d_rgb(noisy, sigma_psd=sigma))
            row["bm3d_call"] = "bm3d_rgb"
        elif rgb:  # per channel, if this bm3d has no RGB entry point
            y, dt = timed(lambda: np.stack([bm3d.bm3d(noisy[..., c], sigma_psd=sigma)
                                            for c in range(3)], -1))
            row["bm3d_call"] = "bm3d per channel"
        else:
            y, dt = timed(lambda: bm3d.bm3d(noisy, sigma_psd=sigma))
            row["bm3d_call"] = "bm3d"
        y = np.asarray(y).reshape(clean.shape)
        row["psnr"]["bm3d"] = psnr(clean, y)
        row["seconds"]["bm3d"] = dt
        outs["bm3d"] = y

        if args.save:
            stem = os.path.splitext(rel.replace("test-noisy/", ""))[0]
            for k, im in outs.items():
                p = os.path.join(args.save, k, stem + ".png")
                os.makedirs(os.path.dirname(p), exist_ok=True)
                Image.fromarray(np.round(np.clip(im, 0, 1) * 255).astype(np.uint8)).save(p)

        results.append(row)
        print(f"  {info['clean']} sigma {sigma}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in row["psnr"].items()), file=sys.stderr, flush=True)

    import skimage
    meta = {"tv_grid": list(TV_GRID), "threads": args.threads,
            "versions": {"scikit-image": skimage.__version__, "numpy": np.__version__,
                         "bm3d": getattr(bm3d, "__version__", _pkg_version("bm3d"))},
            "notes": ["tv_oracle: weight chosen by PSNR against the clean image (oracle)",
                      "wavelet: BayesShrink, soft, rescale_sigma=True, sigma estimated",
                      "bm3d: true sigma given (sigma_psd)",
                      "outputs clipped to [0,1]; PSNR data_range=1 against the clean PNG"]}
    out_json = args.json or os.path.join(sets, "classical.json")
    with open(out_json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)

    methods = ["noisy", "tv_oracle", "wavelet", "bm3d"]
    print("| image | size | sigma | noisy | TV (oracle w) | wavelet | BM3D | "
          "s TV/wav/BM3D |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (r["image"], r["sigma"])):
        h, w = r["shape"][:2]
        size = f"{w}x{h}" + ("x3" if len(r["shape"]) == 3 else "")
        p = r["psnr"]
        s = r["seconds"]
        print(f"| {r['image']} | {size} | {r['sigma']} | {p['noisy']:.2f} | "
              f"{p['tv_oracle']:.2f} ({r['tv_weight']}) | {p['wavelet']:.2f} | "
              f"{p['bm3d']:.2f} | {s['tv_oracle']:.2f}/{s['wavelet']:.2f}/{s['bm3d']:.2f} |")
    for sg in sorted({r["sigma"] for r in results}):
        rs = [r for r in results if r["sigma"] == sg]
        mean = {m: sum(r["psnr"][m] for r in rs) / len(rs) for m in methods}
        print(f"| mean of {len(rs)} | | {sg} | " + " | ".join(
            f"{mean[m]:.2f}" for m in methods) + " | |")
    print(f"\nTV grid (oracle pick): {', '.join(map(str, TV_GRID))}; "
          f"results in {out_json}")


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
