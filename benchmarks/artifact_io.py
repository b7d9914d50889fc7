"""Reading and writing a features artifact: the writer's encodings against a dictionary on every column.

    python -m benchmarks.artifact_io --features ../shared/data/cifar10/features-train.parquet

Reads the artifact, writes it again with ``parquet_options`` (a dictionary only for columns that are not
floating point) and with a dictionary on every column (pyarrow's default), and prints for each the
median of ``--repeats`` timed ``read_features`` and writes, and the file size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.activeft_speed import DEFAULT_FEATURES, timed


def median_seconds(fn, repeats: int) -> float:
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default=str(DEFAULT_FEATURES), help="features artifact (Parquet)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    from active_finetuning.data.artifacts import parquet_options, read_features

    table = pq.read_table(args.features)
    writers = {"plain floats (ours)": parquet_options(table.schema),
               "dictionary everywhere": {**parquet_options(table.schema), "use_dictionary": True}}
    with tempfile.TemporaryDirectory() as scratch:
        for name, options in writers.items():
            path = Path(scratch) / "features.parquet"
            write = median_seconds(lambda: pq.write_table(table, path, **options), args.repeats)
            read = median_seconds(lambda: read_features(str(path)), args.repeats)
            print(f"{name:>22}: read_features {read:.2f} s, write {write:.2f} s, {path.stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
