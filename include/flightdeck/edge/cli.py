"""`flightdeck edge-*` commands: keygen, export, publish, repoint, and the device agent.

`register(commands)` adds them to flightdeck's sub-parsers. Handlers import lazily:
`flightdeck edge-agent` loads only the device-side modules.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path


def _home() -> Path:
    # Not get_settings(): the agent's command must not need pydantic-settings on a device.
    return Path(os.environ.get("FLIGHTDECK_HOME", Path.home() / ".flightdeck")).expanduser().resolve()


def _default_store() -> str:
    return str(_home() / "edge" / "store")


def _keygen(args: argparse.Namespace) -> None:
    from flightdeck.edge.keys import generate_keypair

    private_path, public_path = generate_keypair(Path(args.dir or _home() / "edge" / "keys"))
    print(f"private key: {private_path} (keep it secret; point FLIGHTDECK_EDGE_SIGNING_KEY at it)")
    print(f"public key : {public_path} (copy it to devices: edge-agent --public-key)")


def _export(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.edge.export import TABLE, enforce, export_version
    from flightdeck.registry import Registry

    settings = get_settings()
    out = Path(args.out or settings.home / "edge" / "exports" / f"{args.model_name or settings.model_name}-{args.version}")
    report = export_version(Registry.from_settings(settings), args.model_name or settings.model_name, args.version,
                            out, settings)
    print((out / TABLE).read_text())
    print(f"artifacts in {out}")
    enforce(report)


def _publish(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.edge.keys import default_signing_key, load_private_key
    from flightdeck.edge.publish import publish_artifact

    key = load_private_key(args.signing_key) if args.signing_key else default_signing_key(get_settings().home)
    published = publish_artifact(Path(args.export_dir), args.format, args.store or _default_store(), key,
                                 args.rollout_percent, args.channel)
    print(json.dumps(published.__dict__, indent=1))


def _repoint(args: argparse.Namespace) -> None:
    from flightdeck.config import get_settings
    from flightdeck.edge.keys import default_signing_key, load_private_key
    from flightdeck.edge.publish import repoint_channel

    settings = get_settings()
    key = load_private_key(args.signing_key) if args.signing_key else default_signing_key(settings.home)
    model_name = args.model_name or settings.model_name
    bundle_id = args.bundle_id or f"{args.version}-{args.format}"
    pointer = repoint_channel(args.store or _default_store(), model_name, bundle_id, key, args.channel,
                              rollback=args.rollback)
    print(f"channel {args.channel!r} of {model_name} → bundle {bundle_id} (sequence {pointer['sequence']}, "
          f"{'signed rollback, ' if pointer['rollback'] else ''}valid until {pointer['expires_at']})")
    print(json.dumps(pointer, indent=1))


def _agent(args: argparse.Namespace) -> None:
    import logging
    import signal
    import threading

    from flightdeck.edge.agent import Agent, AgentConfig

    root = Path(args.root or _home() / "edge" / "device")
    if args.status:
        print((root / "state.json").read_text() if (root / "state.json").exists() else '{"status": "never started"}')
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(root=root, store_uri=args.store or _default_store(), model_name=args.model_name,
                         device_id=args.device_id or socket.gethostname(), public_key_path=Path(args.public_key),
                         channel=args.channel, poll_seconds=args.poll_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        state = Agent(config).run(stop, polls=1 if args.once else None)
    except KeyboardInterrupt:
        return
    print(json.dumps(state, indent=1))


def register(commands) -> None:
    """Add the edge commands to an argparse sub-parsers object."""
    keygen = commands.add_parser("edge-keygen", help="create an Ed25519 key pair for signing OTA bundles")
    keygen.add_argument("--dir", help="where to write it (default $FLIGHTDECK_HOME/edge/keys)")
    keygen.set_defaults(func=_keygen)

    export = commands.add_parser("edge-export", help="export a registered version to ONNX int8 and TFLite, with gates")
    export.add_argument("--model-name")
    export.add_argument("--version", default="champion", help="version number or alias")
    export.add_argument("--out", help="output folder (default $FLIGHTDECK_HOME/edge/exports/NAME-VERSION)")
    export.set_defaults(func=_export)

    publish = commands.add_parser("edge-publish", help="sign an exported artifact and publish it as an OTA bundle")
    publish.add_argument("--export-dir", required=True)
    publish.add_argument("--format", default="tflite_int8")
    publish.add_argument("--store", help="folder or s3://bucket/prefix (default $FLIGHTDECK_HOME/edge/store)")
    publish.add_argument("--rollout-percent", type=float, default=100.0)
    publish.add_argument("--channel", default="stable")
    publish.add_argument("--signing-key", help="PEM private key (default $FLIGHTDECK_EDGE_SIGNING_KEY or a "
                                               "generated one under $FLIGHTDECK_HOME/edge/keys)")
    publish.set_defaults(func=_publish)

    repoint = commands.add_parser(
        "edge-repoint", help="sign a new channel pointer to a published bundle: renew the channel, or roll it "
                             "back to an older version with --rollback")
    which = repoint.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="the published model version (with --format)")
    which.add_argument("--bundle-id", help="the bundle id, <model version>-<format> (instead of --version)")
    repoint.add_argument("--format", default="tflite_int8", help="the bundle's format with --version")
    repoint.add_argument("--model-name", help="default: FLIGHTDECK_MODEL_NAME")
    repoint.add_argument("--store", help="folder or s3://bucket/prefix (default $FLIGHTDECK_HOME/edge/store)")
    repoint.add_argument("--channel", default="stable")
    repoint.add_argument("--rollback", action="store_true",
                         help="a deliberate downgrade: devices accept an older version only from a signed rollback")
    repoint.add_argument("--signing-key", help="PEM private key (default $FLIGHTDECK_EDGE_SIGNING_KEY or the "
                                               "generated one under $FLIGHTDECK_HOME/edge/keys)")
    repoint.set_defaults(func=_repoint)

    agent = commands.add_parser("edge-agent", help="run the device agent: poll, verify, install, self-test, switch")
    agent.add_argument("--model-name", default="flightdeck-classifier")
    agent.add_argument("--store", help="folder or s3://bucket/prefix (default $FLIGHTDECK_HOME/edge/store)")
    agent.add_argument("--public-key", required=False, default=str(_home() / "edge" / "keys" / "signing_key.pub.pem"))
    agent.add_argument("--device-id", help="default: the host name")
    agent.add_argument("--root", help="the agent's folder (default $FLIGHTDECK_HOME/edge/device)")
    agent.add_argument("--channel", default="stable")
    agent.add_argument("--poll-seconds", type=float, default=60.0)
    agent.add_argument("--once", action="store_true", help="recover, poll once, print the state and exit")
    agent.add_argument("--status", action="store_true", help="print the state file and exit")
    agent.set_defaults(func=_agent)
