"""Where OTA bundles live: a local folder (embedded default) or S3 (production).

Keys are '/'-separated paths relative to the store root, e.g.
`flightdeck-classifier/bundles/3-tflite_int8/manifest.json`. boto3 is imported only for an
S3 store, so a device reading a folder (or a mounted share) never needs it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from flightdeck.edge.errors import BundleError, StoreError


class Store(Protocol):
    """The two calls bundles need of a store."""

    uri: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; BundleError, without reading it, when it is larger than `max_bytes`."""


def _too_large(key: str, size: int, max_bytes: int) -> BundleError:
    return BundleError(f"{key!r} is larger than {max_bytes} bytes ({size}): not downloaded. Fix: republish "
                       "the bundle; a store object larger than its manifest says is padded or tampered.")


class LocalStore:
    """A folder; writes are atomic (temporary file, fsync, rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError(f"store key {key!r} leaves the store root. Fix: use a relative key without '..'.")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise _too_large(key, size, max_bytes)
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise StoreError(f"{key!r} is not in the store {self.uri}. Fix: publish a bundle first "
                             "(DAG edge_export or `flightdeck edge-publish`).") from None
        if max_bytes is not None and len(data) > max_bytes:  # it grew while we read
            raise _too_large(key, len(data), max_bytes)
        return data


class S3Store:
    """A bucket and key prefix; the endpoint comes from boto3's usual configuration
    (AWS_ENDPOINT_URL for a moto server or MinIO)."""

    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            size = int(answer.get("ContentLength") or 0)
            if max_bytes is not None and size > max_bytes:
                answer["Body"].close()
                raise _too_large(key, size, max_bytes)
            data = answer["Body"].read() if max_bytes is None else answer["Body"].read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise _too_large(key, len(data), max_bytes)
            return data
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NoSuchBucket"}:
                raise StoreError(f"{key!r} is not in the store {self.uri} ({code}). "
                                 "Fix: publish a bundle first, or check the bucket and prefix.") from None
            raise StoreError(f"S3 refused {self._key(key)!r} in {self.bucket}: {code}. "
                             "Fix: check the credentials and the bucket policy.") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 store {self.uri} unreachable: {exc}. Fix: check the endpoint and network.") \
                from exc


def open_store(uri: str | Path) -> Store:
    """`s3://bucket/prefix` → S3Store; a path or `file://` URI → LocalStore."""
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise StoreError(f"store URI {text!r} names no bucket. Fix: use s3://BUCKET[/PREFIX].")
        return S3Store(bucket, prefix)
    if "://" in text and not text.startswith("file://"):
        raise StoreError(f"store URI {text!r} is neither a folder nor s3://. Fix: use a path or s3://BUCKET/PREFIX.")
    return LocalStore(text.removeprefix("file://"))
