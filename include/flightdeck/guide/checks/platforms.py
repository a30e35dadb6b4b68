"""Checkers of the streaming, edge and serverless exercises: Redis streams, the signed edge store,
and the Lambda cost model."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flightdeck.guide.checks.base import (
    Context,
    Criterion,
    answer_file_criterion,
    close,
    needs,
    number,
)

BETA = "beta"


# ---- 05 streaming ---------------------------------------------------------------------------------
def check_05(ctx: Context) -> list[Criterion]:
    answer, data = answer_file_criterion(ctx, 5, ["input", "output", "dead_letter"])
    if data is None:
        return [answer]
    from flightdeck.streaming.redis_streams import connect

    url = str(data.get("redis_url") or ctx.settings.stream_redis_url)
    try:
        client = connect(url)
        inputs = [entry_id for entry_id, _ in client.xrange(str(data["input"]))]
        results = [json.loads(fields[b"data"]) for _, fields in client.xrange(str(data["output"]))]
        dead = [json.loads(fields[b"data"]) for _, fields in client.xrange(str(data["dead_letter"]))]
    except Exception as exc:  # noqa: BLE001 - an unreachable Redis is a missing criterion, not a crash
        reach = Criterion(False, f"the stream Redis {url} answers", f"{exc.__class__.__name__}: {exc}")
        return [answer, reach]
    inputs = [i.decode() if isinstance(i, bytes) else str(i) for i in inputs]
    criteria = [answer, Criterion(len(inputs) >= 503, f"the input stream {data['input']!r} holds at least 503 events "
                                  "(500 good ones and 3 broken ones)", f"{len(inputs)} event(s)")]
    criteria.append(Criterion(len(dead) >= 3 and all(d.get("reason") for d in dead),
                              f"at least 3 events went to the dead-letter stream {data['dead_letter']!r}, each with "
                              "a reason", f"{len(dead)} dead letter(s)" + (f", e.g. {dead[0].get('reason')!r}"
                                                                           if dead else "")))
    seen: dict[str, int] = {}
    for item in [*results, *dead]:
        seen[str(item.get("offset"))] = seen.get(str(item.get("offset")), 0) + 1
    missing = [i for i in inputs if i not in seen]
    twice = [i for i, n in seen.items() if n > 1]
    criteria.append(Criterion(bool(inputs) and not missing and not twice,
                              "every input event has exactly one outcome: one result or one dead letter "
                              "(none lost, none twice)",
                              f"{len(results)} result(s), {len(dead)} dead letter(s); {len(missing)} event(s) "
                              f"without an outcome, {len(twice)} with more than one"))
    champion = ctx.alias("champion")
    versions = sorted({str(r.get("model_version")) for r in results})
    criteria.append(Criterion(bool(results) and versions == [str(champion)],
                              f"the results were scored by the champion (version {champion}) from the registry",
                              f"results name model version(s) {versions}"))
    return criteria


# ---- 06, 07 edge ----------------------------------------------------------------------------------
def _beta(ctx: Context) -> tuple[Criterion, dict | None, dict | None]:
    """(criterion "the beta channel has a valid signed pointer", pointer, manifest)."""
    from flightdeck.edge.bundle import (
        MANIFEST,
        SIGNATURE,
        bundle_prefix,
        channel_key,
        parse_manifest,
        read_pointer,
        sha256,
    )
    from flightdeck.edge.errors import EdgeError
    from flightdeck.edge.keys import PUBLIC_FILE, load_public_key
    from flightdeck.edge.store import open_store

    text = f"the edge store's `{BETA}` channel has a pointer signed by your key, naming a signed bundle"
    public = ctx.settings.home / "edge" / "keys" / PUBLIC_FILE
    store_root = ctx.settings.home / "edge" / "store"
    if not public.exists():
        return Criterion(False, text, f"no public key {public}: publish with the default key"), None, None
    try:
        key = load_public_key(public)
        store = open_store(store_root)
        pointer = read_pointer(store.get(channel_key(ctx.model, BETA)), key, ctx.model, BETA, now=datetime.now(UTC))
        prefix = bundle_prefix(ctx.model, pointer["bundle_id"])
        body = store.get(f"{prefix}/{MANIFEST}")
        manifest = parse_manifest(body, store.get(f"{prefix}/{SIGNATURE}"), key, f"bundle {pointer['bundle_id']}")
    except EdgeError as exc:
        return Criterion(False, text, str(exc)), None, None
    if sha256(body) != pointer["manifest_sha256"]:
        return Criterion(False, text, "the pointer names another manifest than the one stored"), None, None
    return Criterion(True, text, f"bundle {pointer['bundle_id']} (pointer sequence {pointer['sequence']})"), \
        pointer, manifest


def check_06(ctx: Context) -> list[Criterion]:
    from flightdeck.edge.bundle import bundle_prefix, channel_key, check_file, read_pointer
    from flightdeck.edge.errors import EdgeError
    from flightdeck.edge.keys import PUBLIC_FILE, load_public_key
    from flightdeck.edge.store import open_store

    challenger = ctx.alias("challenger")
    signed, pointer, manifest = _beta(ctx)
    if manifest is None:
        return [signed, needs(signed, "every file of the bundle matches its signed size and sha256"),
                needs(signed, "the bundle holds the challenger"), needs(signed, "it reaches at most 25 % of devices"),
                needs(signed, "the stable channel does not serve the challenger")]
    store = open_store(ctx.settings.home / "edge" / "store")
    prefix = bundle_prefix(ctx.model, pointer["bundle_id"])
    try:
        for name in manifest["files"]:
            check_file(manifest, name, store.get(f"{prefix}/{name}"))
        intact = Criterion(True, "every file of the bundle matches its signed size and sha256",
                           f"{len(manifest['files'])} file(s)")
    except EdgeError as exc:
        intact = Criterion(False, "every file of the bundle matches its signed size and sha256", str(exc))
    model = Criterion(str(manifest["model_version"]) == str(challenger),
                      f"the bundle holds the challenger (version {challenger})",
                      f"manifest: {manifest['model_name']} version {manifest['model_version']}, {manifest['format']}")
    percent = number(manifest.get("rollout_percent"))
    cohort = Criterion(percent is not None and 0 < percent <= 25, "it reaches more than 0 % and at most 25 % of "
                       "devices (the beta cohort)", f"rollout_percent {manifest.get('rollout_percent')}")
    try:
        stable = read_pointer(store.get(channel_key(ctx.model, "stable")),
                              load_public_key(ctx.settings.home / "edge" / "keys" / PUBLIC_FILE),
                              ctx.model, "stable", now=None)
        stable_bundle = stable["bundle_id"]
    except EdgeError:
        stable_bundle = None
    alone = Criterion(stable_bundle != pointer["bundle_id"],
                      "the stable channel does not point at the beta bundle (devices on stable are untouched)",
                      f"stable points at {stable_bundle or 'nothing'}")
    return [signed, intact, model, cohort, alone]


def check_07(ctx: Context) -> list[Criterion]:
    from flightdeck.edge.bundle import in_cohort

    signed, pointer, manifest = _beta(ctx)
    if manifest is None:
        return [signed, needs(signed, "your answer names devices in and out of the beta cohort")]
    answer, data = answer_file_criterion(ctx, 7, ["in_cohort", "not_in_cohort"])
    if data is None:
        return [signed, answer]
    percent = float(manifest["rollout_percent"])
    criteria = [signed, answer]
    for key, expected in (("in_cohort", True), ("not_in_cohort", False)):
        devices = data[key] if isinstance(data[key], list) else []
        wrong = [d for d in devices if in_cohort(str(d), pointer["bundle_id"], percent) is not expected]
        criteria.append(Criterion(len({str(d) for d in devices}) >= 3 and not wrong,
                                  f"`{key}` lists at least 3 device ids that {'take' if expected else 'do not take'} "
                                  f"the beta bundle at {percent:g} %",
                                  f"{len(devices)} listed; wrong: {wrong or 'none'}"))
    return criteria


# ---- 08 serverless --------------------------------------------------------------------------------
CONTAINER = {"container_vcpu": 0.25, "container_memory_gb": 0.5, "min_replicas": 2}  # `flightdeck cost` defaults


def check_08(ctx: Context) -> list[Criterion]:
    from flightdeck.serverless.cost import Workload, break_even, container_monthly, lambda_monthly

    answer, data = answer_file_criterion(ctx, 8, ["latency_ms", "memory_mb", "break_even_rps", "traffic_rps",
                                                  "cheaper"])
    if data is None:
        return [answer]
    latency, memory, traffic = number(data["latency_ms"]), number(data["memory_mb"]), number(data["traffic_rps"])
    inputs = Criterion(latency is not None and 0 < latency <= 10_000 and memory in (128, 256, 512, 1024, 2048)
                       and traffic is not None and traffic > 0,
                       "`latency_ms` (0-10,000), `memory_mb` (128 … 2048) and `traffic_rps` (> 0) are numbers",
                       f"latency_ms {data['latency_ms']!r}, memory_mb {data['memory_mb']!r}, "
                       f"traffic_rps {data['traffic_rps']!r}")
    if not inputs.met:
        return [answer, inputs, needs(inputs, "`break_even_rps` is what `flightdeck cost` computes"),
                needs(inputs, "`cheaper` names the cheaper option at your traffic")]
    work = Workload(latency_ms=latency, lambda_memory_mb=int(memory), **CONTAINER)
    even = break_even(work)
    stated = data["break_even_rps"]
    if even is None:
        ok = stated is None or str(stated).lower() in ("none", "never")
    else:
        ok = close(stated, even, rel=0.01)
    criteria = [answer, inputs, Criterion(ok, "`break_even_rps` is the break-even that `flightdeck cost` computes "
                                          "for your latency and memory (±1 %; `none` when the lines never cross)",
                                          f"you wrote {stated!r}; the cost model gives "
                                          f"{'none' if even is None else f'{even:.3f}'} requests/s")]
    lam, box = lambda_monthly(traffic, work), container_monthly(traffic, work)
    cheaper = "lambda" if lam < box else "container"
    criteria.append(Criterion(str(data["cheaper"]).lower() == cheaper,
                              "`cheaper` (lambda or container) is the cheaper option at `traffic_rps`",
                              f"at {traffic:g} requests/s Lambda costs ${lam:,.2f} and the containers ${box:,.2f} "
                              "a month"))
    return criteria
