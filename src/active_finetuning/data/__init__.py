"""The data layer: storage (local paths and ``gs://``), the Parquet artifacts and their schemas, the
image manifest, image decoding, and the embedded demo data."""
