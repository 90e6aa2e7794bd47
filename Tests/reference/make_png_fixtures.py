"""Writes the small PNG fixtures of Tests/DAETests/Fixtures/images with Pillow: the first MNIST test
digit as 8-bit gray, RGB, palette, 16-bit and gray+alpha PNGs (all of which must decode to the
same gray digit), a 45x30 image whose sides are not multiples of 4, and three broken files (not a
PNG, truncated, zero width). Run from the repository root: python3 Tests/reference/make_png_fixtures.py"""
import gzip
import struct
import zlib

import numpy as np
from PIL import Image

out = "Tests/DAETests/Fixtures/images/"
raw = gzip.open("data/mnist/t10k-images-idx3-ubyte.gz").read()
digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
d = digits[0]
Image.fromarray(d).save(out + "gray.png")
Image.fromarray(np.stack([d] * 3, -1)).save(out + "rgb.png")
Image.fromarray(np.stack([d] * 3, -1)).convert("P", palette=Image.ADAPTIVE, colors=256).save(out + "palette.png")
Image.fromarray(d.astype(np.uint16) * 257).save(out + "sixteen.png")
Image.fromarray(np.stack([d, np.full_like(d, 255)], -1), "LA").save(out + "alpha.png")
odd = np.zeros((30, 45), np.uint8)
odd[1:29, 0:28] = digits[1]
odd[1:29, 17:45] = np.maximum(odd[1:29, 17:45], digits[2])
Image.fromarray(odd).save(out + "odd.png")
with open(out + "notpng.png", "w") as f:
    f.write("this is not a PNG file\n")
good = open(out + "gray.png", "rb").read()
open(out + "truncated.png", "wb").write(good[: len(good) // 2])
# zero width: IHDR's width field set to 0, with its CRC fixed so that only the size is wrong
ihdr = bytearray(good[12:29])          # type + 13 data bytes
ihdr[4:8] = struct.pack(">I", 0)
zero = good[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + good[33:]
open(out + "zerowidth.png", "wb").write(zero)
