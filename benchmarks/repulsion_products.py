"""The repulsion's B × d products of ActiveFT, timed alone: the compiled products against the correctly
rounded ones they replaced and against MKL's GEMMs (docs/selection.md, "The same bits with any number of
threads").

    python -m benchmarks.repulsion_products                 # B = 500, d = 1280, 2 threads
    python -m benchmarks.repulsion_products --isa avx2      # torch, MKL and the compiled loops limited to AVX2

Each figure is the minimum and the median of ``--repeats`` calls on random unit rows. "after a torch call":
the same call right after a parallel torch operation, as inside a step, where torch's OpenMP threads are
still spinning on the cores the product's threads need (libgomp's default wait; the command line sets a short
one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from benchmarks.activeft_speed import AVX2_ENVIRONMENT


def timings(function, repeats: int) -> str:
    function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return f"min {1000 * min(seconds):6.2f} ms, median {1000 * statistics.median(seconds):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--centers", type=int, default=500)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--isa", choices=["native", "avx2"], default="native")
    args = parser.parse_args()
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks.repulsion_products", *sys.argv[1:]],
                                 env={**os.environ, **AVX2_ENVIRONMENT}))
    import torch

    from active_finetuning.selection.exact import exact_matmul, rounded_products
    from active_finetuning.selection.products import fixed_gram, fixed_products

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(args.centers, args.dim, generator=generator), dim=1)
    weights = torch.softmax(torch.randn(args.centers, args.centers, generator=generator) / 0.07, dim=1)
    columns, wide = centers.T.contiguous(), centers.double()
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{args.threads} threads, B = {args.centers}, d = {args.dim}")
    rows = [
        ("Gram matrix: compiled, upper tiles mirrored", lambda: fixed_gram(centers)),
        ("Gram matrix: correctly rounded (float64 GEMM + rounding)", lambda: rounded_products(centers, centers)),
        ("weights · centers: compiled", lambda: fixed_products(weights, columns)),
        ("weights · centers: correctly rounded", lambda: rounded_products(weights, columns)),
        ("weights · centers: compiled, after a torch call", lambda: (centers * 2.0, fixed_products(weights, columns))),
        ("B × B × d: MKL float32 GEMM", lambda: centers @ centers.T),
        ("B × B × d: MKL float64 GEMM", lambda: wide @ wide.T),
    ]
    with exact_matmul():
        for name, function in rows:
            print(f"{name:58s} {timings(function, args.repeats)}")


if __name__ == "__main__":
    main()
