"""Apply a KubernetesTarget's manifests through the cncf-kubernetes provider's connection.

The provider's `KubernetesHook.apply_from_yaml_file` only *creates* objects
(`kubernetes.utils.create_from_yaml`), so a second run fails with 409 AlreadyExists. A
rollout step must be re-runnable, so this applier uses server-side apply (one PATCH per
object, `application/apply-patch+yaml`) through the `kubernetes` dynamic client, on the
API client the hook builds from the Airflow connection (`kubernetes_default` by default).

    target = KubernetesTarget(..., applier=KubernetesHookApplier(), reader=KubernetesHookApplier().read_route)
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

from flightdeck.delivery.targets.kubernetes import GATEWAY_API

FIELD_MANAGER = "flightdeck"


class KubernetesHookApplier:
    """Server-side applies manifests in order; reads the HTTPRoute back for `state()`.

    `force_conflicts` takes fields over from other managers (e.g. a `kubectl edit` of the
    weights): the rollout's plan is the source of truth while it runs.
    """

    def __init__(self, kubernetes_conn_id: str = "kubernetes_default", *, field_manager: str = FIELD_MANAGER,
                 force_conflicts: bool = True, hook: KubernetesHook | None = None) -> None:
        self.kubernetes_conn_id = kubernetes_conn_id
        self.field_manager = field_manager
        self.force_conflicts = force_conflicts
        self._hook = hook

    @cached_property
    def hook(self) -> KubernetesHook:
        return self._hook or KubernetesHook(conn_id=self.kubernetes_conn_id)

    @cached_property
    def dynamic(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.hook.api_client)  # discovers the API groups (HTTPRoute's CRD too)

    def __call__(self, documents: list[dict]) -> None:
        for document in documents:
            resource = self.dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
            self.dynamic.server_side_apply(
                resource, body=document, name=document["metadata"]["name"],
                namespace=document["metadata"]["namespace"], field_manager=self.field_manager,
                force_conflicts=self.force_conflicts)

    def read_route(self, namespace: str, name: str) -> dict | None:
        """The live HTTPRoute `namespace/name`, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.hook.get_custom_object(group=GATEWAY_API, version="v1", plural="httproutes",
                                               name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
