"""Writes the JPEG and TIFF fixtures of Tests/DAETests/Fixtures/images with Pillow: the first MNIST
test digit as gray and RGB JPEG (quality 95), 8-bit gray, 16-bit gray and RGB TIFF, a three-page
TIFF (digits 0, 1, 2 of the test set), and truncated JPEG and TIFF files. Run from the repository
root, in a venv with Pillow and numpy: python3 Tests/reference/make_image_fixtures.py"""
import gzip

import numpy as np
from PIL import Image

out = "Tests/DAETests/Fixtures/images/"
raw = gzip.open("data/mnist/t10k-images-idx3-ubyte.gz").read()
digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
d = digits[0]
Image.fromarray(d).save(out + "gray.jpg", quality=95)
Image.fromarray(np.stack([d] * 3, -1)).save(out + "rgb.jpg", quality=95)
Image.fromarray(d).save(out + "gray.tif")
Image.fromarray(d.astype(np.uint16) * 257).save(out + "sixteen.tif")
Image.fromarray(np.stack([d] * 3, -1)).save(out + "rgb.tif", compression="tiff_deflate")
pages = [Image.fromarray(digits[i]) for i in range(3)]
pages[0].save(out + "pages.tif", save_all=True, append_images=pages[1:])
for name in ["gray.jpg", "gray.tif"]:
    good = open(out + name, "rb").read()
    open(out + "truncated." + name.split(".")[1], "wb").write(good[: len(good) // 2])

# Colour fixtures with hand-checkable values: a 2x3 RGB image as PNG and TIFF (lossless), and a
# 16x16 image of one colour as JPEG (quality 100: within a level or two of it after decoding).
colour = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                   [[10, 20, 30], [200, 100, 50], [0, 0, 0]]], np.uint8)
Image.fromarray(colour).save(out + "colour.png")
Image.fromarray(colour).save(out + "colour.tif")
Image.fromarray(np.full((16, 16, 3), (200, 100, 50), np.uint8)).save(out + "colour.jpg", quality=100)
# the same 2x3 image with alpha (the second row half transparent), and as a palette PNG
rgba = np.concatenate([colour, np.array([[[255]] * 3, [[128]] * 3], np.uint8)], -1)
Image.fromarray(rgba, "RGBA").save(out + "colour-alpha.png")
Image.fromarray(colour).convert("P", palette=Image.ADAPTIVE, colors=6).save(out + "colour-palette.png")
