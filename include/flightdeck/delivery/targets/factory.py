"""Build a rollout's deployment target and its metric source from the resolved plan.

Free of Airflow: whatever reaches a system (the gateway's URL and token, a Kubernetes
applier, a boto3 Lambda client) is handed in by the caller. A Lambda target is pinned when
the rollout resolves (`pin_target`): the alias's version then is the baseline for every
later task, including a rollback that runs after the alias moved to the candidate. An ECS
target is pinned the same way: the colour with all the traffic then stays the baseline colour,
and so are the Cloud Run (the revision with all the traffic) and Azure slot (the version in
production) targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
from flightdeck.delivery.targets.base import DeliveryTarget


def make_target(rollout: ResolvedRollout, *, gateway: tuple[str, str | None] | None = None,
                kubernetes_applier: Callable[[str], Any] | None = None,
                lambda_client: Any = None, ecs_clients: tuple[Any, Any] | None = None,
                gcp_token: Any = None, azure_token: Any = None) -> DeliveryTarget:
    """The target of `rollout`.

    Args:
        gateway: (base URL, admin token) of the gateway, for target gateway.
        kubernetes_applier: builds an applier (with `apply` and `read_route`) from a
            connection id, for target kubernetes without `manifests_dir`.
        lambda_client: a boto3 Lambda client (None: boto3's default chain), for target lambda.
        ecs_clients: boto3 (ECS, ELBv2) clients (None: boto3's default chain), for target ecs.
        gcp_token: an access token (or a callable returning one) for target cloud_run; None
            uses google-auth's application default credentials.
        azure_token: an ARM bearer token (or a callable returning one), for target azure_slots.
    """
    plan = rollout.plan
    if plan.target == "kubernetes":
        return _kubernetes_target(rollout, kubernetes_applier)
    if plan.target == "lambda":
        return _lambda_target(rollout, lambda_client)
    if plan.target == "ecs":
        return _ecs_target(rollout, ecs_clients)
    if plan.target == "cloud_run":
        return _cloud_run_target(rollout, gcp_token)
    if plan.target == "azure_slots":
        return _azure_slots_target(rollout, azure_token)
    from flightdeck.delivery.targets.gateway import GatewayTarget
    from flightdeck.serving.client import GatewayClient

    if gateway is None:
        raise ValueError("target gateway needs the gateway's (url, token)")
    url, token = gateway
    return GatewayTarget(GatewayClient(url, token), plan.endpoint, plan.model_name, rollout.baseline_version,
                         rollout.candidate_version, plan.strategy, shadow_percent=plan.shadow_percent,
                         author_comment=f"[{plan.strategy} rollout]", candidate_faults=plan.drill_faults)


def pin_target(rollout: ResolvedRollout, target: DeliveryTarget) -> ResolvedRollout:
    """`rollout` with the target as it is now recorded, where the target reads its baseline from
    the live system (Lambda: the alias's version and the published candidate). The gateway and
    Kubernetes targets are built from the model versions the rollout already pinned."""
    if rollout.plan.target == "ecs":
        target.baseline_colour  # noqa: B018 - read from the listener rule now, so to_dict() records it
        return rollout.with_target_state(target.to_dict())
    if rollout.plan.target in ("cloud_run", "azure_slots"):
        target.variant_names()  # noqa: B018 - baseline (and candidate) read now, so to_dict() records them
        return rollout.with_target_state(target.to_dict())
    if rollout.plan.target != "lambda":
        return rollout
    target.candidate_version  # noqa: B018 - looked up now, so to_dict() records it
    return rollout.with_target_state(target.to_dict())


def _kubernetes_target(rollout: ResolvedRollout, kubernetes_applier: Callable[[str], Any] | None):
    from flightdeck.delivery.targets.kubernetes import KubernetesTarget, ManifestDirectory

    options = dict(rollout.plan.target_options)
    manifests_dir, conn_id = options.pop("manifests_dir", None), options.pop("kubernetes_conn_id", None)
    if manifests_dir:
        writer = ManifestDirectory(manifests_dir)
        applier, reader = writer.apply, writer.read_route
    else:
        if kubernetes_applier is None:
            raise ValueError("target kubernetes without manifests_dir needs a kubernetes_applier")
        hook_applier = kubernetes_applier(conn_id or "kubernetes_default")
        applier, reader = hook_applier.apply, hook_applier.read_route
    return KubernetesTarget(model_name=rollout.plan.model_name, baseline_version=rollout.baseline_version,
                            candidate_version=rollout.candidate_version, applier=applier, reader=reader, **options)


def _lambda_target(rollout: ResolvedRollout, client: Any):
    """The function's alias; the candidate is the version serverless_package published for the
    candidate model version (found by its Description). Once pinned, the baseline is the
    version the alias served when the rollout resolved, not what it serves now."""
    from flightdeck.delivery.targets.aws_lambda import LambdaAliasTarget

    if rollout.target_state:
        return LambdaAliasTarget.from_dict(rollout.target_state, client)
    options = rollout.plan.target_options
    return LambdaAliasTarget(client, function_name=options["function_name"], alias=options["alias"],
                             model_name=rollout.plan.model_name, model_version=rollout.candidate_version,
                             use_published=True, region=options.get("region"), poll_seconds=1.0)


def _ecs_target(rollout: ResolvedRollout, clients: tuple[Any, Any] | None):
    """Blue and green services behind a weighted listener rule; once pinned, the baseline colour is
    the one that had all the traffic when the rollout resolved."""
    from flightdeck.delivery.targets.ecs import EcsTarget

    ecs_client, elbv2_client = clients or (None, None)
    if rollout.target_state:
        return EcsTarget.from_dict(rollout.target_state, ecs_client, elbv2_client)
    options = rollout.plan.target_options
    return EcsTarget(ecs_client, elbv2_client, cluster=options["cluster"], blue_service=options["blue_service"],
                     green_service=options["green_service"], listener_rule_arn=options["listener_rule_arn"],
                     container=options.get("container", "gateway"), region=options.get("region"),
                     model_name=rollout.plan.model_name, baseline_version=rollout.baseline_version,
                     candidate_version=rollout.candidate_version)


def _cloud_run_target(rollout: ResolvedRollout, token: Any):
    """Two revisions of the Cloud Run service (a 2nd gen function's); once pinned, the baseline is
    the revision that had all the traffic when the rollout resolved."""
    from flightdeck.delivery.targets.cloud_run import CloudRunTarget

    if rollout.target_state:
        return CloudRunTarget.from_dict(rollout.target_state, token=token)
    options = dict(rollout.plan.target_options)
    return CloudRunTarget(project=options["project"], location=options["location"], service=options["service"],
                          model_name=rollout.plan.model_name, model_version=rollout.candidate_version,
                          candidate_revision=options.get("candidate_revision"), token=token,
                          **({"api_base": options["api_base"]} if options.get("api_base") else {}))


def _azure_slots_target(rollout: ResolvedRollout, token: Any):
    """Production and a deployment slot of the function app; once pinned, the baseline is the
    version production served when the rollout resolved."""
    from flightdeck.delivery.targets.azure_slots import AzureSlotsTarget

    if rollout.target_state:
        return AzureSlotsTarget.from_dict(rollout.target_state, token=token)
    options = dict(rollout.plan.target_options)
    extra = {key: options[key] for key in ("slot", "package_url", "api_base") if options.get(key)}
    return AzureSlotsTarget(subscription_id=options["subscription_id"], resource_group=options["resource_group"],
                            app=options["app"], model_name=rollout.plan.model_name,
                            model_version=rollout.candidate_version, token=token, **extra)


def source_config(plan: RolloutPlan, gateway_url: str | None = None) -> dict:
    """The metric source's configuration (flightdeck.delivery.sources.make_source) for a plan."""
    if plan.metrics_source == "cloudwatch":
        options = plan.target_options
        config = {"kind": "cloudwatch", "function_name": options["function_name"], "alias": options["alias"]}
        config.update({key: options[key] for key in ("region", "period") if options.get(key)})
        return config
    if plan.metrics_source == "prometheus":
        return {"kind": "prometheus", "url": plan.prometheus_url, "endpoint": plan.endpoint}
    if gateway_url is None:
        raise ValueError("metrics_source gateway needs the gateway's url")
    return {"kind": "gateway", "url": gateway_url, "endpoint": plan.endpoint}
