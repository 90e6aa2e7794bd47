#!/usr/bin/env python3
"""Build real-image training and held-out sets, plus a synthetic text-page set.

Every real image is read from a file that an installed package ships
(offline: nothing is downloaded; scikit-image's pooch-fetched images are not
used). Files are opened by path, and each one's SHA-256 is written to
manifest.json next to the sets.

Sources (package, file inside it, license as the package states it)
-----------------------------------------------------------------------------
scikit-image 0.26 wheel, skimage/data/ (license: docstring of skimage.data.<fn>)
  camera.png        gray photo         CC0 (photographer Lav Varshney)
  coins.png         gray photo         "No known copyright restrictions"
                                       (Brooklyn Museum collection)
  brick.png         gray texture photo CC0 (CC0Textures)
  grass.png         gray texture photo CC0 (DeviantArt, linolafett)
  gravel.png        gray texture photo CC0 (CC0Textures)
  cell.png          gray phase image   CC0
  astronaut.png     RGB photo          public domain (NASA)
  coffee.png        RGB photo          CC0 (photographer Rachel Michetti)
  rocket.jpg        RGB photo          public domain (SpaceX)
  hubble_deep_field.jpg RGB photo      public domain (NASA/HubbleSite)
  retina.jpg        RGB photo          CC0 1.0 (Wikimedia, M. Haggstrom)
  ihc.png           RGB micrograph     "No known copyright restrictions"
  chelsea.png       RGB photo          CC0 (photographer Stefan van der Walt)
  text.png          photographed handwritten page
                                       public domain ("No known copyright
                                       restrictions, released into the public
                                       domain"; Wikipedia File:Corner.png)
  page.png          photographed printed page (scikit-image documentation
                    text). The docstring states no license; the file is covered
                    only by the wheel's blanket "Files: *  BSD-3-Clause,
                    the scikit-image team" (dist-info LICENSE.txt; Debian's
                    python3-skimage copyright says the same). Not PD/CC0:
                    left out with --pd-only.
matplotlib 3.x wheel, matplotlib/mpl-data/sample_data/
  grace_hopper.jpg  RGB photo          public domain (U.S. Navy photograph of
                                       Grace Hopper; matplotlib added it as a
                                       public-domain replacement of "Lena";
                                       the package has no per-file notice)
DejaVu fonts (Debian fonts-dejavu-core), /usr/share/fonts/truetype/dejavu/
  *.ttf             used to render the synthetic pages; Bitstream Vera /
                    DejaVu license (free, redistributable).

Not used: scikit-image images that pooch downloads at run time (eagle, cells3d,
...), synthetic ones (horse, logo, colorwheel, phantom, chessboard), moon.png
(no license stated), clock_motion.png (motion-blurred on purpose),
motorcycle_*.png (Middlebury, no license stated), microaneurysms.png (102 px).

Held out: test images (and no crop of them) never appear in train:
  gray/test : text, page, hopper (gray)    rgb/test : chelsea, hopper
  train uses neither chelsea, hopper, text nor page.

Noise: noisy = clip(clean + sigma*N(0,1), 0, 1) on the clean PNG's [0,1]
values, saved as 8-bit PNG (rounded), numpy default_rng seeded from
(--seed, sigma, set, image name), so the files are the same on every run.

Usage:  python3 make_sets.py OUTDIR [--pd-only] [--seed N]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIGMAS = (0.1, 0.2)
FONT_DIR = "/usr/share/fonts/truetype/dejavu"


def skimage_data_dir():
    import skimage.data
    return os.path.dirname(skimage.data.__file__)


def mpl_sample_dir():
    import matplotlib
    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")


# name -> (package dir function, file, license, kind)
SOURCES = {
    "camera": (skimage_data_dir, "camera.png", "CC0 (Lav Varshney)"),
    "coins": (skimage_data_dir, "coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    "brick": (skimage_data_dir, "brick.png", "CC0 (CC0Textures)"),
    "grass": (skimage_data_dir, "grass.png", "CC0 (DeviantArt linolafett)"),
    "gravel": (skimage_data_dir, "gravel.png", "CC0 (CC0Textures)"),
    "cell": (skimage_data_dir, "cell.png", "CC0"),
    "astronaut": (skimage_data_dir, "astronaut.png", "public domain (NASA)"),
    "coffee": (skimage_data_dir, "coffee.png", "CC0 (Rachel Michetti)"),
    "rocket": (skimage_data_dir, "rocket.jpg", "public domain (SpaceX)"),
    "hubble": (skimage_data_dir, "hubble_deep_field.jpg", "public domain (NASA)"),
    "retina": (skimage_data_dir, "retina.jpg", "CC0 1.0 (Wikimedia)"),
    "ihc": (skimage_data_dir, "ihc.png", "no known copyright restrictions"),
    "chelsea": (skimage_data_dir, "chelsea.png", "CC0 (Stefan van der Walt)"),
    "text": (skimage_data_dir, "text.png", "public domain (Wikipedia File:Corner.png)"),
    "page": (skimage_data_dir, "page.png", "not stated per file; package blanket BSD-3-Clause"),
    "hopper": (mpl_sample_dir, "grace_hopper.jpg", "public domain (U.S. Navy photograph)"),
}
NOT_PD = {"page"}

# Training sources. Gray train = gray photos/scans + gray conversions of the
# RGB training photos. Crops: (size, max crops) per source.
GRAY_TRAIN = ["camera", "coins", "brick", "grass", "gravel", "cell"]
RGB_TRAIN = ["astronaut", "coffee", "rocket", "hubble", "retina", "ihc"]
GRAY_TEST = ["text", "page", "hopper"]
RGB_TEST = ["chelsea", "hopper"]
TRAIN_CROP = 192
TEST_MAX = 320  # test photos: center crop to at most this side (multiple of 8)
FULL_TEST = {"text", "page"}  # text pages are kept whole (sides cut to multiples of 8)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def load(name):
    base, fname, lic = SOURCES[name]
    path = os.path.join(base(), fname)
    if not os.path.isfile(path):
        sys.exit(f"missing packaged file {path} (install the package; nothing is downloaded)")
    im = Image.open(path)
    im.load()
    return im, path


def to_gray(im):
    if im.mode in ("L", "I;16", "1"):
        return im.convert("L")
    # ITU-R 601 luma, as PIL does
    return im.convert("RGB").convert("L")


def crop8(im, max_side=None):
    """Center-crop so each side is a multiple of 8 (and at most max_side)."""
    w, h = im.size
    nw, nh = w - w % 8, h - h % 8
    if max_side:
        nw, nh = min(nw, max_side), min(nh, max_side)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    return im.crop((x0, y0, x0 + nw, y0 + nh))


def grid_crops(im, size, n):
    """Up to n non-overlapping size x size crops, spread over the image."""
    w, h = im.size
    nx, ny = max(1, w // size), max(1, h // size)
    boxes = []
    for j in range(ny):
        for i in range(nx):
            # spread the grid over the whole image
            x = 0 if nx == 1 else round(i * (w - size) / (nx - 1))
            y = 0 if ny == 1 else round(j * (h - size) / (ny - 1))
            boxes.append((x, y, x + size, y + size))
    if len(boxes) > n:
        idx = np.linspace(0, len(boxes) - 1, n).round().astype(int)
        boxes = [boxes[k] for k in idx]
    return [im.crop(b) for b in boxes if b[2] <= w and b[3] <= h]


def save_png(im, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, format="PNG", optimize=False)


def save_jpg(im, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, format="JPEG", quality=95)


def name_seed(seed, *parts):
    return [seed] + [zlib.crc32(str(p).encode()) for p in parts]


def add_noise(path, out_path, sigma, seed):
    clean = np.asarray(Image.open(path), dtype=np.float64) / 255.0
    rng = np.random.default_rng(seed)
    noisy = np.clip(clean + sigma * rng.standard_normal(clean.shape), 0.0, 1.0)
    arr = np.round(noisy * 255.0).astype(np.uint8)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    Image.fromarray(arr).save(out_path, format="PNG")


# ----------------------------------------------------------------- rendered pages
WORDS = (
    "the of and to in is that for it as with was on be by at this from or an are "
    "which not have but has had one all their there were been when who will more "
    "no if out so said what up its about into than them can only other new some "
    "time could these two may then first any like now my such make over our even "
    "most after also made many before must well back through years where much way "
    "down should because each just those people how too little state good very "
    "world still own see men work long here get both between life being under "
    "never day same another know while last might us great old year off come "
    "since against go came right used take three signal noise filter image pixel "
    "denoise network layer training gradient weight batch epoch sample paper scan "
    "ink margin column figure table section value result method error measure"
).split()


def lorem(rng, n_words):
    out = []
    cap = True
    for _ in range(n_words):
        w = WORDS[rng.integers(len(WORDS))]
        if cap:
            w = w.capitalize()
            cap = False
        if rng.random() < 0.02:
            w = str(rng.integers(1, 2000))
        out.append(w)
        r = rng.random()
        if r < 0.07:
            out[-1] += "."
            cap = True
        elif r < 0.12:
            out[-1] += ","
    return out


def render_page(rng, w, h):
    """A text page rendered at 2x, then degraded like a scan. Returns L image."""
    fonts = sorted(f for f in os.listdir(FONT_DIR) if f.endswith(".ttf") and "MathTeX" not in f)
    if not fonts:
        sys.exit(f"no fonts in {FONT_DIR}: apt-get install fonts-dejavu-core")
    S = 2
    W, H = w * S, h * S
    page = Image.new("L", (W, H), 255)
    d = ImageDraw.Draw(page)
    body = ImageFont.truetype(os.path.join(FONT_DIR, fonts[rng.integers(len(fonts))]),
                              size=int(rng.integers(11, 17)) * S)
    head = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSerif-Bold.ttf"),
                              size=int(rng.integers(16, 22)) * S)
    margin = int(rng.integers(10, 24)) * S
    y = margin
    ink = int(rng.integers(10, 60))
    # heading
    title = " ".join(lorem(rng, int(rng.integers(2, 5)))).rstrip(".,")
    d.text((margin, y), title, font=head, fill=ink)
    y += int(head.size * 1.6)
    line_h = int(body.size * 1.35)
    words = lorem(rng, 2000)
    k = 0
    while y + line_h < H - margin and k < len(words):
        line = ""
        while k < len(words):
            cand = (line + " " + words[k]).strip()
            if d.textlength(cand, font=body) > W - 2 * margin:
                break
            line = cand
            k += 1
        d.text((margin, y), line, font=body, fill=ink)
        y += line_h
        if rng.random() < 0.12:  # paragraph break
            y += line_h // 2
    # down to final size (anti-aliased), slight optical blur
    page = page.resize((w, h), Image.LANCZOS)
    page = page.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 0.9))))
    a = np.asarray(page, dtype=np.float64) / 255.0
    # paper: slightly off-white, uneven illumination (smooth 2-D gradient + vignette)
    yy, xx = np.mgrid[0:h, 0:w]
    xx, yy = xx / w - 0.5, yy / h - 0.5
    gx, gy = rng.uniform(-0.12, 0.12, size=2)
    illum = 1.0 + gx * xx + gy * yy - rng.uniform(0.05, 0.15) * (xx**2 + yy**2) * 2
    paper = rng.uniform(0.86, 0.95)
    # paper grain: fine speckle + low-frequency mottling (blurred noise)
    fine = rng.standard_normal((h, w)) * 0.012
    low = Image.fromarray(((rng.standard_normal((h, w)) * 40) + 128).clip(0, 255).astype(np.uint8))
    low = np.asarray(low.filter(ImageFilter.GaussianBlur(radius=6)), dtype=np.float64) / 255.0 - 0.5
    low *= 0.25
    bg = paper * illum + fine + low
    out = a * bg + (1 - a) * (ink / 255.0) * illum  # ink darkens, paper shows through
    out = np.clip(out, 0, 1)
    return Image.fromarray(np.round(out * 255).astype(np.uint8))


# ----------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--pd-only", action="store_true",
                    help="leave out images that are not public domain / CC0 (page)")
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--rendered-train", type=int, default=8)
    ap.add_argument("--rendered-test", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    out = os.path.abspath(args.outdir)
    for sub in ("gray", "rgb", "rendered", "graypages", "test-noisy"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    manifest = {"sources": {}, "files": {}, "seed": args.seed, "sigmas": list(SIGMAS)}
    used = set()

    def note(name, path):
        used.add(name)
        manifest["sources"][name] = {"path": path, "sha256": sha256(path),
                                     "license": SOURCES[name][2]}

    def record(rel, src, how):
        manifest["files"][rel] = {"source": src, "from": how}

    gray_test = [n for n in GRAY_TEST if not (args.pd_only and n in NOT_PD)]
    rgb_test = [n for n in RGB_TEST if not (args.pd_only and n in NOT_PD)]
    held_out = set(gray_test) | set(rgb_test)
    assert not held_out & (set(GRAY_TRAIN) | set(RGB_TRAIN)), "train/test overlap"

    # gray train: gray sources + gray versions of RGB training photos
    for n in GRAY_TRAIN + RGB_TRAIN:
        im, path = load(n)
        note(n, path)
        g = to_gray(im)
        for i, c in enumerate(grid_crops(g, TRAIN_CROP, 4)):
            rel = f"gray/train/{n}_{i}.png"
            save_png(c, os.path.join(out, rel))
            record(rel, n, f"gray, crop {TRAIN_CROP}")

    # rgb train: PNG and JPEG (q95), alternating per crop
    for n in RGB_TRAIN:
        im, path = load(n)
        rgb = im.convert("RGB")
        for i, c in enumerate(grid_crops(rgb, TRAIN_CROP * 4 // 3, 4)):
            c = crop8(c)
            if (i + RGB_TRAIN.index(n)) % 2 == 0:
                rel = f"rgb/train/{n}_{i}.png"
                save_png(c, os.path.join(out, rel))
            else:
                rel = f"rgb/train/{n}_{i}.jpg"
                save_jpg(c, os.path.join(out, rel))
            record(rel, n, "rgb crop")

    tests = []  # (set, rel path of clean test png)
    for n in gray_test:
        im, path = load(n)
        note(n, path)
        rel = f"gray/test/{n}.png"
        lim = None if n in FULL_TEST else TEST_MAX
        save_png(crop8(to_gray(im), lim), os.path.join(out, rel))
        record(rel, n, f"gray, center crop <= {lim or 'full'}")
        tests.append(("gray", rel))
    for n in rgb_test:
        im, path = load(n)
        note(n, path)
        rel = f"rgb/test/{n}.png"
        save_png(crop8(im.convert("RGB"), TEST_MAX), os.path.join(out, rel))
        record(rel, n, f"rgb, center crop <= {TEST_MAX}")
        tests.append(("rgb", rel))

    # rendered pages (own seed streams for train and test: no shared page)
    for split, count, size in (("train", args.rendered_train, (384, 512)),
                               ("test", args.rendered_test, (256, 320))):
        rng = np.random.default_rng(name_seed(args.seed, "rendered", split))
        for i in range(count):
            w, h = size
            im = render_page(rng, w, h)
            rel = f"rendered/{split}/page{i}.png"
            save_png(im, os.path.join(out, rel))
            record(rel, "DejaVu fonts (fonts-dejavu-core)", "rendered")
            if split == "test":
                tests.append(("rendered", rel))

    # noisy test images
    for kind, rel in tests:
        stem = os.path.splitext(os.path.basename(rel))[0]
        for s in SIGMAS:
            nrel = f"test-noisy/sigma{s}/{kind}/{stem}.png"
            add_noise(os.path.join(out, rel), os.path.join(out, nrel), s,
                      name_seed(args.seed, s, kind, stem))
            manifest["files"][nrel] = {"clean": rel, "sigma": s}

    # graypages: the gray set with the rendered training pages added, for a model meant for
    # documents; the same held-out real images and noisy files (byte copies), no rendered test page
    for rel in list(manifest["files"]):
        entry = manifest["files"][rel]
        if rel.startswith(("gray/", "rendered/train/")):
            copy = "graypages/" + rel.split("/", 1)[1]
        elif rel.startswith("test-noisy/") and rel.split("/")[2] == "gray":
            copy = rel.replace("/gray/", "/graypages/", 1)
            entry = dict(entry, clean=entry["clean"].replace("gray/", "graypages/", 1))
        else:
            continue
        os.makedirs(os.path.dirname(os.path.join(out, copy)), exist_ok=True)
        shutil.copyfile(os.path.join(out, rel), os.path.join(out, copy))
        manifest["files"][copy] = dict(entry, copy_of=rel)

    # checks: every side a multiple of 8
    total = 0
    for rel in manifest["files"]:
        p = os.path.join(out, rel)
        total += os.path.getsize(p)
        w, h = Image.open(p).size
        assert w % 8 == 0 and h % 8 == 0, (rel, w, h)
    manifest["tests"] = [{"kind": k, "clean": r} for k, r in tests]
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)

    # summary
    for sub in ("gray/train", "gray/test", "rgb/train", "rgb/test",
                "rendered/train", "rendered/test", "graypages/train", "graypages/test"):
        d = os.path.join(out, sub)
        fs = sorted(os.listdir(d))
        size = sum(os.path.getsize(os.path.join(d, f)) for f in fs)
        print(f"{sub:15s} {len(fs):3d} files {size / 1e6:6.2f} MB")
    nn = sum(1 for r in manifest["files"] if r.startswith("test-noisy/"))
    print(f"test-noisy      {nn:3d} files (sigma {', '.join(map(str, SIGMAS))})")
    print(f"total {total / 1e6:.2f} MB in {out}; {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
