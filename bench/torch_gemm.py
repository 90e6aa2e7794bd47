"""PyTorch's single-threaded GEMM rate on the stacked model's shapes, for comparison with
`dae-dist bench --what gemm --model stacked --micro-batch M` (the same three products of a
1000-wide Linear layer and M rows; PyTorch's CPU build calls MKL for them):

    python3 bench/torch_gemm.py 25 50 100

Prints one line per shape and M: GFLOP/s, best of 3 runs of 200 warm calls.
"""
import sys
import time

import torch

torch.set_num_threads(1)
width = 1000
for rows in [int(a) for a in sys.argv[1:]] or [25]:
    x = torch.rand(rows, width) * 0.6
    w = torch.rand(width, width) * 0.4
    out_rows, out_square = torch.empty(rows, width), torch.empty(width, width)
    shapes = [
        ("forward x . W^T", lambda: torch.mm(x, w.t(), out=out_rows)),
        ("weight gradient dy^T . x", lambda: torch.mm(x.t(), x, out=out_square)),
        ("input gradient dy . W", lambda: torch.mm(x, w, out=out_rows)),
    ]
    for name, call in shapes:
        for _ in range(20):
            call()
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(200):
                call()
            best = max(best, 2.0 * rows * width * width * 200 / (time.perf_counter() - start) / 1e9)
        print(f"torch.mm {name} (M = {rows}, 1000 x 1000), 1 thread: {best:.1f} GFLOP/s")
