"""Nightly batch scoring: input validation and quarantine, Dask scoring with the ONNX
artifact, atomic prediction partitions, and drift / volume monitoring."""
