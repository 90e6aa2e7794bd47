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
