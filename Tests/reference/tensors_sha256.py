#!/usr/bin/env python3
"""sha256 over a safetensors file's tensors, sorted by name: each name, dtype and shape, then its
raw little-endian bytes. Metadata (versions, dates) is left out, so two files with the same weights
give the same digest whatever wrote them. Standard library only.

    python3 Tests/reference/tensors_sha256.py runs/x/model.safetensors
"""
import hashlib
import json
import struct
import sys


def digest(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    h = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        begin, end = entry["data_offsets"]
        h.update(f"{name} {entry['dtype']} {entry['shape']}\n".encode())
        h.update(body[begin:end])
    return h.hexdigest()


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(digest(path), path)
