"""Ed25519 keys for bundle signatures (`cryptography`).

The publisher holds the private key; devices hold the public key only. The private key is
never committed: it comes from a PEM file (`FLIGHTDECK_EDGE_SIGNING_KEY`, or the Airflow
connection `flightdeck_edge_signing`), or in the embedded default is generated once under
`$FLIGHTDECK_HOME/edge/keys/` (mode 0600) with the public key beside it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flightdeck.edge.errors import BundleError, EdgeError

log = logging.getLogger(__name__)

SIGNING_KEY_ENV = "FLIGHTDECK_EDGE_SIGNING_KEY"
PRIVATE_FILE = "signing_key.pem"
PUBLIC_FILE = "signing_key.pub.pem"


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Write a new private key (0600) and its public key into `directory`; refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_FILE, directory / PUBLIC_FILE
    if private_path.exists():
        raise EdgeError(f"{private_path} already exists. Fix: choose another directory or delete it on purpose "
                        "(devices trusting its public key would then reject new bundles).")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(public_pem(key))
    return private_path, public_path


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_from_pem(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EdgeError(f"signing key from {source} is not an unencrypted PEM private key ({exc}). "
                        "Fix: create one with `flightdeck edge-keygen`.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeError(f"signing key from {source} is {type(key).__name__}, not Ed25519. "
                        "Fix: create one with `flightdeck edge-keygen`.")
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path).expanduser()
    if not path.is_file():
        raise EdgeError(f"signing key file {path} does not exist. Fix: point {SIGNING_KEY_ENV} at the PEM "
                        "file, or create one with `flightdeck edge-keygen`.")
    return private_key_from_pem(path.read_bytes(), str(path))


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    path = Path(path).expanduser()
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise EdgeError(f"public key file {path} does not exist. Fix: copy the publisher's public key "
                        "(signing_key.pub.pem) to the device.") from None
    except ValueError as exc:
        raise EdgeError(f"{path} is not a PEM public key ({exc}). Fix: copy signing_key.pub.pem.") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise EdgeError(f"{path} holds a {type(key).__name__}, not an Ed25519 key. Fix: copy signing_key.pub.pem.")
    return key


def default_signing_key(home: Path) -> Ed25519PrivateKey:
    """The key of the embedded default: `$FLIGHTDECK_EDGE_SIGNING_KEY` when set, else
    `home/edge/keys/signing_key.pem`, generated on first use (the log says where the public key is)."""
    configured = os.environ.get(SIGNING_KEY_ENV)
    if configured:
        return load_private_key(configured)
    directory = home / "edge" / "keys"
    if not (directory / PRIVATE_FILE).exists():
        _, public_path = generate_keypair(directory)
        log.warning("generated an edge signing key pair; give devices the public key %s", public_path)
    return load_private_key(directory / PRIVATE_FILE)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes, what: str) -> None:
    """Raise BundleError unless `signature` signs `message` with the key's private half."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise BundleError(f"{what}: the signature does not match the publisher's key (tampered, or signed "
                          "with another key). Fix: republish with the key whose public half the device holds.") \
            from None
