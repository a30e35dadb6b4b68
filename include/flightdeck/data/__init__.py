"""Raw data: the schema contract, a deterministic synthetic generator, the one partition
reader/writer (`ds=YYYY-MM-DD` parquet folders) and the Great Expectations suite."""
