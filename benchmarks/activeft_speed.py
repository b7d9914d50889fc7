"""ActiveFT speed and memory: our selector against the dense reference, in one process.

    python -m benchmarks.activeft_speed --features ../shared/data/cifar10/features-train.parquet
    python -m benchmarks.activeft_speed --iterations 20        # a quick run while developing
    python -m benchmarks.activeft_speed --noise-floor          # + what rounding alone does to the picks
    python -m benchmarks.activeft_speed --precision float64    # ours and the reference both in float64
    python -m benchmarks.activeft_speed --isa avx2             # as on a CPU without bfloat16 instructions
    python -m benchmarks.activeft_speed --repeats 3 --cli      # medians of 3 runs of ours and of the CLI

The reference is the test oracle ``tests/oracles/activeft_dense.py``: autograd over the full N×B
similarity matrix, as in the official code. Both start from the same initial centroids
(``random.Random(seed).sample(range(N), B)``). Printed (and written with ``--json``): wall and CPU
seconds of each, their ratio, shared picks, both final objectives (the official loss of the last
iteration, docs/methods.md §2.4) and their relative difference, the FLOP floor of a plain iteration
(one N×B×d product, 2·N·B·d FLOPs) at this CPU's measured float32 and bfloat16 GEMM rates, and peak
resident memory (VmHWM of a child process: whole-process figures, torch's libraries included)
of our selector and of the reference on features loaded from a ``.npy`` file, and of the CLI ``select``
command end to end from the Parquet artifact (see ``--memory-iterations``). Also: the CPU capability
torch dispatches to, the assignment path ours took (bounds or every row; the scorer) and the share
of rows it scored per iteration, and the wall time of the whole CLI ``select`` from the Parquet
artifact (``--cli``).

``--isa avx2`` runs the whole benchmark in a child process whose torch, oneDNN and MKL are limited
to AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``)
and whose row passes are compiled for an AVX2 CPU (``NUMBA_CPU_NAME=haswell``, with that CPU's own
features: ``NUMBA_CPU_FEATURES`` empty):
on a CPU with AVX-512 and bfloat16 instructions it measures what a CPU without them would do (a
bfloat16 GEMM becomes about six times slower than a float32 one, as on AVX2-only machines).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FEATURES = ROOT.parent / "shared" / "data" / "cifar10" / "features-train.parquet"
NOISE_RUNS = ("ours-1-thread", "reference-1-thread", "reference-float64")
AVX2_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                    "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""}


def machine() -> dict:
    """What the figures ran on: torch's CPU capability, the CPU's bfloat16 flags, any ISA limit."""
    import torch

    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
            "isa_limits": {k: os.environ[k] for k in AVX2_ENVIRONMENT if k in os.environ},
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def run_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of an ActiveFT run that the benchmarks share: the pool, B, iterations, threads, seed."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=str(DEFAULT_FEATURES), help="features artifact (Parquet)")
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--precision", choices=["float32", "float64"], default="float32",
                        help="ours with this precision parameter against the reference in this dtype")
    parser.add_argument("--gemm-repeats", type=int, default=5, help="timed GEMMs per rate (median)")
    parser.add_argument("--memory-iterations", type=int, default=5,
                        help="iterations of the memory children (the peak is reached in the first one); 0 skips them")
    parser.add_argument("--noise-floor", nargs="*", choices=NOISE_RUNS, metavar="RUN",
                        help=f"also make these runs ({', '.join(NOISE_RUNS)}; all when none is named) and report "
                             "the picks every pair of runs shares: how far rounding alone moves the selection")
    parser.add_argument("--cli", action="store_true", help="also time the whole CLI select from the Parquet artifact")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of ours (and of the CLI) whose median is compared, half of them before the "
                             "reference and half after, so that a machine whose speed drifts during the "
                             "reference's minutes weighs on both sides; each must make the same picks")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="avx2: run limited to AVX2 instructions (see above)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--memory-child", choices=["ours", "reference", "cli"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        env = {**os.environ, **AVX2_ENVIRONMENT}
        sys.exit(subprocess.run([sys.executable, "-m", __spec__.name, *sys.argv[1:]], env=env, cwd=ROOT).returncode)

    import torch

    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return
    figures = run(args)
    print(report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def load(path: str):
    from active_finetuning.data.artifacts import read_features
    from active_finetuning.selection.api import unit_rows

    table = read_features(path)
    return table, unit_rows(table.features)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def gemm_rates(features, budget: int, repeats: int) -> dict:
    import torch

    centers = features[torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(0))[:budget]]
    flops = 2 * features.shape[0] * budget * features.shape[1]
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        left, right = features.to(dtype), centers.to(dtype)
        left @ right.T  # warm-up
        seconds = statistics.median(timed(lambda: left @ right.T)[1] for _ in range(repeats))
        rates[name] = {"seconds": seconds, "gflops": flops / seconds / 1e9}
    return {"flops_per_iteration": flops, **rates}


def run(args) -> dict:
    import torch

    from active_finetuning.selection import select
    from tests.oracles.activeft_dense import dense_activeft

    # The reference uses torch.optim.Adam, whose first use in a process imports torch._dynamo (~1.5 s;
    # ours calls torch's functional Adam and does not): import it before timing, so that the
    # reference is not charged for it.
    import torch._dynamo  # noqa: F401

    table, features = load(args.features)
    n, dim = features.shape
    figures = {"n": n, "d": dim, "budget": args.budget, "iterations": args.iterations,
               "threads": args.threads, "seed": args.seed, "precision": args.precision, "machine": machine(),
               "gemm": gemm_rates(features, args.budget, args.gemm_repeats)}
    runs, cli_runs = [], []

    def ours_and_cli() -> None:
        runs.append(timed(lambda: select(table, args.budget, "activeft", seed=args.seed,
                                         iterations=args.iterations, precision=args.precision)))
        if args.cli:
            cli_runs.append(cli_seconds(args))

    repeats = max(1, args.repeats)
    for _ in range((repeats + 1) // 2):
        ours_and_cli()
    dtype = getattr(torch, args.precision)
    (reference, reference_loss), wall, cpu = timed(lambda: dense_activeft(features, args.budget, seed=args.seed,
                                                                          iterations=args.iterations, dtype=dtype))
    figures["reference"] = {"seconds": wall, "cpu_seconds": cpu, "final_loss": reference_loss}
    for _ in range(repeats // 2):
        ours_and_cli()
    selection = runs[0][0]
    ours = [int(i) for i in selection.indices]
    if any([int(i) for i in run[0].indices] != ours for run in runs):
        raise RuntimeError("two runs of ours made different picks")
    figures["ours"] = {"seconds": statistics.median(run[1] for run in runs),
                       "cpu_seconds": statistics.median(run[2] for run in runs),
                       "runs_seconds": [run[1] for run in runs],
                       "final_loss": selection.metadata["info"]["final_loss"],
                       "assignment": selection.metadata["info"]["assignment"]}
    if args.cli:
        figures["cli_seconds"] = statistics.median(cli_runs)
        figures["cli_runs_seconds"] = cli_runs
    figures["speedup"] = figures["reference"]["seconds"] / figures["ours"]["seconds"]
    figures["speedup_cpu"] = figures["reference"]["cpu_seconds"] / figures["ours"]["cpu_seconds"]
    if "cli_seconds" in figures:
        figures["speedup_cli"] = figures["reference"]["seconds"] / figures["cli_seconds"]
    figures["shared_picks"] = len(set(ours) & set(reference))
    figures["same_order"] = ours == list(reference)
    figures["loss_relative_difference"] = abs(figures["ours"]["final_loss"] - reference_loss) / abs(reference_loss)
    if args.noise_floor is not None:
        figures["noise_floor"] = noise_floor(args, table, features, {"ours": ours, "reference": list(reference)})
    floor = figures["gemm"]["flops_per_iteration"] * args.iterations
    figures["floor_seconds"] = {name: floor / (figures["gemm"][name]["gflops"] * 1e9) for name in ("fp32", "bf16")}
    if args.memory_iterations > 0:
        figures["memory"] = memory_of(args, features)
        figures["memory"]["iterations"] = args.memory_iterations
    return figures


def cli_seconds(args) -> float:
    """Wall time of ``active-finetuning select`` from the Parquet artifact, in a fresh process
    (start-up, reading and writing included)."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "active_finetuning.cli", "select", "--method", "activeft",
                   "--features", args.features, "--out", str(Path(scratch) / "selection.parquet"),
                   "--budget", str(args.budget), "--iterations", str(args.iterations), "--seed", str(args.seed),
                   "--threads", str(args.threads), "--precision", args.precision, "--no-progress"]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - started


def noise_floor(args, table, features, picks: dict) -> dict:
    """Shared picks between runs that differ only in rounding: ours and the reference with 1 thread
    instead of ``--threads`` (both in ``--precision``), and the reference in float64 (the same
    trajectory with float32's rounding errors 2⁻²⁹ times smaller, so nearly the exact one)."""
    import torch

    from active_finetuning.selection import select
    from tests.oracles.activeft_dense import dense_activeft

    common = {"seed": args.seed, "iterations": args.iterations}
    runs = {
        "ours-1-thread": lambda: [int(i) for i in select(table, args.budget, "activeft", precision=args.precision,
                                                         **common).indices],
        "reference-1-thread": lambda: dense_activeft(features, args.budget, dtype=getattr(torch, args.precision),
                                                     **common)[0],
        "reference-float64": lambda: dense_activeft(features, args.budget, dtype=torch.float64, **common)[0],
    }
    for name in args.noise_floor or NOISE_RUNS:
        torch.set_num_threads(1 if name.endswith("1-thread") else args.threads)
        picks[name] = runs[name]()
    torch.set_num_threads(args.threads)
    names = list(picks)
    return {f"{a} | {b}": len(set(picks[a]) & set(picks[b])) for i, a in enumerate(names) for b in names[i + 1:]}


def memory_of(args, features) -> dict:
    """Peak resident memory (VmHWM of a fresh child process, so whole-process figures: interpreter,
    torch's libraries, the features and the working set) of our selector, of the reference, and
    of the CLI ``select`` end to end from the Parquet artifact."""
    import numpy as np

    common = ["--budget", str(args.budget), "--iterations", str(args.memory_iterations),
              "--threads", str(args.threads), "--seed", str(args.seed), "--precision", args.precision]
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        array = Path(scratch) / "features.npy"
        np.save(array, features.numpy())
        for which, source in (("ours", array), ("reference", array), ("cli", args.features)):
            command = [sys.executable, "-m", __spec__.name, "--memory-child", which, "--features", str(source),
                       "--json", str(Path(scratch) / "selection.parquet"), *common]
            out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            figures[which] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def peak_rss_mib() -> float:
    """This process's resident high-water mark (VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args) -> dict:
    """Run one side; report the resident peak after loading the features and at the end."""
    import numpy as np
    import torch

    if args.memory_child == "cli":
        from active_finetuning.cli.main import main as cli

        cli(["select", "--method", "activeft", "--features", args.features, "--out", args.json,
             "--budget", str(args.budget), "--iterations", str(args.iterations), "--seed", str(args.seed),
             "--threads", str(args.threads), "--precision", args.precision, "--no-progress"])
        return {"peak_rss_mib": peak_rss_mib()}
    features = np.load(args.features)
    loaded = peak_rss_mib()
    if args.memory_child == "ours":
        from active_finetuning.selection import select

        select(features, args.budget, "activeft", seed=args.seed, iterations=args.iterations,
               precision=args.precision)
    else:
        from tests.oracles.activeft_dense import dense_activeft

        dense_activeft(torch.from_numpy(features), args.budget, seed=args.seed, iterations=args.iterations,
                       dtype=getattr(torch, args.precision))
    return {"peak_rss_mib": peak_rss_mib(), "after_loading_mib": loaded}


def _runs(seconds, what: str) -> str:
    """The single runs behind a median, with how many came after the reference."""
    if not seconds or len(seconds) < 2:
        return ""
    first = (len(seconds) + 1) // 2
    listed = ", ".join(f"{s:.1f}" for s in seconds[:first]) + " | " + ", ".join(f"{s:.1f}" for s in seconds[first:])
    return f" (median of {len(seconds)} runs of {what}: {listed} s, before | after the reference)"


def report(f: dict) -> str:
    g, it = f["gemm"], f["iterations"]
    ours, ref = f["ours"], f["reference"]
    m, path = f["machine"], ours["assignment"]
    lines = [
        f"N={f['n']} d={f['d']} B={f['budget']} iterations={it} threads={f['threads']} seed={f['seed']} "
        f"precision={f.get('precision', 'float32')}",
        f"CPU capability {m['cpu_capability']} (CPU bf16 flags: {', '.join(m['cpu_bf16_flags']) or 'none'}; "
        f"ISA limits: {m['isa_limits'] or 'none'}), torch {m['torch']}",
        f"ours: assignment {path['mode']}, scorer {path['scorer']}, rows scored per iteration "
        f"{path['rows_scored']:.3f}, rows tightened {path['rows_tightened']:.3f}",
        f"GEMM N×d·d×B: fp32 {g['fp32']['seconds']:.3f} s ({g['fp32']['gflops']:.0f} GFLOP/s), "
        f"bf16 {g['bf16']['seconds']:.3f} s ({g['bf16']['gflops']:.0f} GFLOP/s)",
        f"reference (dense autograd): {ref['seconds']:.1f} s wall ({ref['seconds'] / it:.3f} s/iteration), "
        f"{ref['cpu_seconds']:.1f} s CPU",
        f"ours:                       {ours['seconds']:.1f} s wall ({ours['seconds'] / it:.3f} s/iteration), "
        f"{ours['cpu_seconds']:.1f} s CPU" + _runs(ours.get("runs_seconds"), "ours"),
        f"speed-up: {f['speedup']:.2f}x wall, {f['speedup_cpu']:.2f}x CPU time"
        + (f"; whole CLI from Parquet {f['cli_seconds']:.1f} s, {f['speedup_cli']:.2f}x"
           + _runs(f.get("cli_runs_seconds"), "CLI") if "cli_seconds" in f else ""),
        f"shared picks: {f['shared_picks']}/{f['budget']} (same order: {f['same_order']})",
        f"final objective: ours {ours['final_loss']:.6f}, reference {ref['final_loss']:.6f}, "
        f"relative difference {f['loss_relative_difference']:.2e}",
        f"floor (2·N·B·d per iteration × {it}): fp32 {f['floor_seconds']['fp32']:.1f} s, "
        f"bf16 {f['floor_seconds']['bf16']:.1f} s; ours / floor: "
        f"{ours['seconds'] / f['floor_seconds']['fp32']:.2f} (fp32), {ours['seconds'] / f['floor_seconds']['bf16']:.2f} (bf16)",
    ]
    for pair, shared in f.get("noise_floor", {}).items():
        lines.append(f"shared picks, {pair}: {shared}/{f['budget']}")
    m = f.get("memory")
    if m:
        lines.append(f"peak RSS of a child process ({m['iterations']} iterations; torch's libraries included): "
                     f"ours {m['ours']['peak_rss_mib']:.0f} MiB (after loading the unit features from .npy: "
                     f"{m['ours']['after_loading_mib']:.0f} MiB), reference {m['reference']['peak_rss_mib']:.0f} MiB "
                     f"(after loading: {m['reference']['after_loading_mib']:.0f} MiB), "
                     f"CLI select from the Parquet artifact {m['cli']['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
