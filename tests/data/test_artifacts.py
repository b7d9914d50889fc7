import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from active_finetuning.data.artifacts import (
    FeatureTable,
    Selection,
    read_features,
    read_selection,
    write_features,
    write_selection,
)
from active_finetuning.errors import InputError


def test_features_round_trip_keeps_ids_values_labels_and_metadata(tmp_path, mixture):
    features, labels = mixture
    table = FeatureTable.from_array(features.astype(np.float16), labels=labels, metadata={"model": "m"})
    write_features(table, str(tmp_path / "f.parquet"))
    back = read_features(f"file://{tmp_path / 'f.parquet'}")
    assert back.sample_ids.tolist() == table.sample_ids.tolist()
    assert back.features.dtype == np.float16
    np.testing.assert_array_equal(back.features, table.features)
    np.testing.assert_array_equal(back.labels, labels)
    assert back.metadata == {"model": "m"}
    assert back.identity() == table.identity()
    # Feature values are stored plain (a float16 dictionary makes reading them twice as slow); labels keep their dictionary.
    group = pq.ParquetFile(tmp_path / "f.parquet").metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["feature.list.element"]
    assert "RLE_DICTIONARY" in encodings["label"]


def test_selection_round_trip_in_rank_order(tmp_path):
    selection = Selection(np.array([4, 1, 2]), np.array(["d", "b", "c"], dtype=object),
                          np.array(["core", "boundary", "boundary"], dtype=object),
                          score=np.array([0.0, 0.5, 0.25]), pseudo_class=np.array([0, 0, 1]),
                          metadata={"method": "x"})
    write_selection(selection, str(tmp_path / "s.parquet"))
    pool = FeatureTable.from_array(np.eye(5, dtype=np.float32) + 0.1, sample_ids=list("abcde"))
    back = read_selection(str(tmp_path / "s.parquet"), pool=pool)
    assert back.sample_ids.tolist() == ["d", "b", "c"]
    assert back.indices.tolist() == [3, 1, 2]
    assert back.role.tolist() == ["core", "boundary", "boundary"]
    assert back.metadata == {"method": "x"}


def _write_raw(path, columns):
    pq.write_table(pa.table(columns), path)
    return str(path)


@pytest.mark.parametrize("columns, message", [
    ({"sample_id": ["a", "b"], "feature": [[1.0, float("nan")], [1.0, 2.0]]}, "NaN or infinite"),
    ({"sample_id": ["a", "b"], "feature": [[1.0, float("inf")], [1.0, 2.0]]}, "NaN or infinite"),
    ({"sample_id": ["a", "b"], "feature": [[0.0, 0.0], [1.0, 2.0]]}, "all-zero rows"),
    ({"sample_id": ["a", "b"], "feature": [[1.0, 2.0], [1.0, 2.0, 3.0]]}, "mixes dimensions"),
    ({"sample_id": ["a", "a"], "feature": [[1.0, 2.0], [1.0, 2.0]]}, "duplicated ids"),
    ({"sample_id": ["a", "b"], "vector": [[1.0, 2.0], [1.0, 2.0]]}, "no 'feature' column"),
    ({"id": ["a", "b"], "feature": [[1.0, 2.0], [1.0, 2.0]]}, "no 'sample_id' column"),
    ({"sample_id": pa.array([], pa.string()), "feature": pa.array([], pa.list_(pa.float32()))}, "empty"),
])
def test_bad_features_are_rejected_with_a_message_naming_the_problem(tmp_path, columns, message):
    path = _write_raw(tmp_path / "bad.parquet", columns)
    with pytest.raises(InputError, match=message):
        read_features(path)


def test_unsupported_scheme_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unsupported URI scheme"):
        read_features("ftp://host/features.parquet")
    with pytest.raises(InputError, match="does not exist"):
        read_features(str(tmp_path / "absent.parquet"))


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    class Boom(Exception):
        pass

    from active_finetuning.data import storage

    target = tmp_path / "out.parquet"
    with pytest.raises(Boom):
        with storage.atomic_output(str(target)) as tmp:
            tmp.write_bytes(b"half")
            raise Boom()
    assert list(tmp_path.iterdir()) == []


def test_ids_are_compared_exactly_and_reported_as_plain_strings(tmp_path):
    from active_finetuning.data.artifacts import check_unique_ids
    from active_finetuning.errors import InputError

    check_unique_ids(np.asarray(["x", "x\0"], dtype=object))  # different ids (NumPy would drop the NUL)
    with pytest.raises(InputError, match=r"duplicated ids \(first: 'x'\)") as caught:
        check_unique_ids(np.asarray(["x", "y", "x"], dtype=object))
    assert "np.str_" not in str(caught.value)
    with pytest.raises(InputError, match="row 1 holds a null"):
        check_unique_ids(np.asarray(["x", None], dtype=object))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_row_checks_on_the_bits_agree_with_numpy(dtype):
    from active_finetuning.data.artifacts import _finite_and_nonzero_rows

    specials = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1.0, -2.5, np.finfo(dtype).tiny,
                         np.finfo(dtype).smallest_subnormal, np.finfo(dtype).max], dtype=dtype)
    rows = np.random.default_rng(0).choice(specials, size=(400, 3))
    rows[:4] = [[0.0, -0.0, 0.0], [-0.0, -0.0, -0.0], [np.finfo(dtype).smallest_subnormal, 0, 0], [np.nan, 0, 0]]
    finite, nonzero = _finite_and_nonzero_rows(rows)
    np.testing.assert_array_equal(finite, np.isfinite(rows).all(axis=1))
    np.testing.assert_array_equal(nonzero, np.any(rows != 0, axis=1))
    np.testing.assert_array_equal(_finite_and_nonzero_rows(rows[:, ::2])[1], np.any(rows[:, ::2] != 0, axis=1))
    wide = np.zeros((9, 400_000), dtype=dtype)  # rows so long that they are checked a few per block
    wide[[1, 4, 8], [5, 399_999, 0]] = [np.inf, np.finfo(dtype).smallest_subnormal, np.nan]
    finite, nonzero = _finite_and_nonzero_rows(wide)
    np.testing.assert_array_equal(finite, np.isfinite(wide).all(axis=1))
    np.testing.assert_array_equal(nonzero, np.any(wide != 0, axis=1))
