"""The only module that talks to the Kubernetes API (besides kopf's own watch).

Called by the operator's handlers (`corral.controller.handlers`) and its
leader election (`corral.controller.leader`). Objects go in and come out as
plain dicts in the API's own JSON shape, so the deciding functions never see a
client type. Writes of owned objects use server-side apply with one field
manager, which makes every reconcile idempotent: applying the same desired
object twice changes nothing, and fields someone edited by hand are taken back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from corral.api import GROUP, VERSION

FIELD_MANAGER = "corral-operator"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_CORRAL = f"/apis/{GROUP}/{VERSION}"


class KubeError(RuntimeError):
    """A Kubernetes API call failed; the message names the object and the cause."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller owner reference to `owner`: deleting it deletes the child."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass
class Kube:
    """Typed-enough access to the few resources corral reads and writes."""

    api: client.ApiClient

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        """In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config.
        KubeError "cannot load WHERE: WHY" when that cannot be loaded (no file,
        not a kubeconfig, no current context)."""
        configuration = client.Configuration()
        in_pod = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        try:
            if in_pod:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=configuration
                )
        except Exception as exc:  # ConfigException, or a file that is not a kubeconfig
            where = (
                "the pod's ServiceAccount"
                if in_pod
                else kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            )
            why = (
                str(exc)
                if isinstance(exc, config.ConfigException)
                else f"not a kubeconfig file ({type(exc).__name__}: {exc})"
            )
            raise KubeError(f"cannot load {where}: {why}") from None
        return cls(client.ApiClient(configuration))

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: dict[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        conflict_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One API call. Returns the response object; None for a 404 when
        `missing_ok` or a 409 when `conflict_ok`; raises KubeError otherwise."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, serialized, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=30
            )
            data: str | bytes = response.read() or b""  # type: ignore[no-untyped-call]
            status = response.status
        except ApiException as exc:
            status, data = exc.status, (exc.body or b"")
        except urllib3.exceptions.HTTPError as exc:
            # No answer: refused, reset, timed out (the client's retries
            # spent). A KubeError like any other failed call, so the callers'
            # error paths run (a token minted for an unwritten Secret revoked,
            # a kopf retry, the error counted).
            reason = getattr(exc, "reason", None) or exc
            raise KubeError(f"{what}: no answer from the API server: {reason}") from exc
        if 200 <= status < 300:
            result: dict[str, Any] = json.loads(data) if data else {}
            return result
        if (status == 404 and missing_ok) or (status == 409 and conflict_ok):
            return None
        try:
            message = json.loads(data).get("message") or data
        except ValueError:
            message = data
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise KubeError(f"{what}: HTTP {status}: {message}", status)

    def _read(self, path: str, what: str) -> dict[str, Any] | None:
        """GET `path`; None when it is not there."""
        return self._request("GET", path, f"reading {what}", missing_ok=True)

    def _merge_patch(self, path: str, what: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Merge `body` into the object at `path` as the operator's field
        manager; the object as written, or None when it is gone (nothing left
        to change)."""
        return self._request(
            "PATCH",
            path,
            what,
            body=body,
            query=[("fieldManager", FIELD_MANAGER)],
            content_type=_MERGE,
            missing_ok=True,
        )

    def _list(
        self, path: str, what: str, query: list[tuple[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        """The items of the list at `path` (GET with `query`)."""
        listing = self._request("GET", path, f"listing {what}", query=query) or {}
        return list(listing.get("items", []))

    # -- reading ------------------------------------------------------------------

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            f"Deployment {namespace}/{name}",
        )

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(
            f"/api/v1/namespaces/{namespace}/secrets/{name}", f"Secret {namespace}/{name}"
        )

    def get_region(self, name: str) -> dict[str, Any] | None:
        return self._read(f"{_CORRAL}/regions/{name}", f"Region {name}")

    def get_workerpool(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(
            f"{_CORRAL}/namespaces/{namespace}/workerpools/{name}", f"WorkerPool {namespace}/{name}"
        )

    def list_workerpools(self, namespaces: list[str] | None = None) -> list[dict[str, Any]]:
        """Every WorkerPool (in `namespaces` when given)."""
        paths = (
            [f"{_CORRAL}/namespaces/{namespace}/workerpools" for namespace in namespaces]
            if namespaces
            else [f"{_CORRAL}/workerpools"]
        )
        items: list[dict[str, Any]] = []
        for path in paths:
            for item in self._list(path, "WorkerPools"):
                # List items carry no kind/apiVersion; the models want them.
                items.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerPool", **item})
        return items

    def list_events(
        self, namespace: str, kind: str, name: str | None = None
    ) -> list[dict[str, Any]]:
        """The Events about objects of `kind` in `namespace` (only the one named
        `name`, when given), as the API returns them (the dashboard's Pools page)."""
        selector = f"involvedObject.kind={kind}"
        if name is not None:
            selector += f",involvedObject.name={name}"
        return self._list(
            f"/api/v1/namespaces/{namespace}/events",
            f"events of {kind} {namespace}/{name or '*'}",
            [("fieldSelector", selector)],
        )

    def list_regions(self) -> list[dict[str, Any]]:
        return [
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Region", **item}
            for item in self._list(f"{_CORRAL}/regions", "Regions")
        ]

    # -- writing ------------------------------------------------------------------

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of a Deployment, Secret, PodDisruptionBudget,
        NetworkPolicy or Region (created if missing)."""
        kind = body["kind"]
        name = body["metadata"]["name"]
        namespace = body["metadata"].get("namespace")
        paths = {
            "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            "Secret": f"/api/v1/namespaces/{namespace}/secrets/{name}",
            "PodDisruptionBudget": (
                f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}"
            ),
            "NetworkPolicy": (
                f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}"
            ),
            "Region": f"{_CORRAL}/regions/{name}",
        }
        what = f"applying {kind} {namespace + '/' if namespace else ''}{name}"
        if kind not in paths:
            raise KubeError(f"{what}: corral does not manage {kind} objects")
        result = self._request(
            "PATCH",
            paths[kind],
            what,
            body=body,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type=_APPLY,
        )
        assert result is not None
        return result

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict[str, Any] | None:
        """Set only spec.replicas (a merge patch: an apply of this one field
        would drop every other field the operator applied). Returns the
        Deployment as written (None when it is gone)."""
        return self._merge_patch(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            f"scaling Deployment {namespace}/{name}",
            {"spec": {"replicas": replicas}},
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching a label selector in one namespace."""
        return self._list(
            f"/api/v1/namespaces/{namespace}/pods",
            f"pods {selector} in {namespace}",
            [("labelSelector", selector)],
        )

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Set (or, with None, remove) annotations of a pod; a pod gone meanwhile is fine."""
        self._merge_patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            f"annotating pod {namespace}/{name}",
            {"metadata": {"annotations": annotations}},
        )

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its preStop hook and grace period apply); gone already is fine."""
        self._request(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            f"deleting pod {namespace}/{name}",
            missing_ok=True,
        )

    def post_event(
        self, obj: dict[str, Any], type: str, reason: str, message: str, component: str
    ) -> None:
        """Record an Event about `obj` (what `kubectl describe` shows), for code
        that runs outside kopf's handlers (kopf posts its handlers' own)."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._request(
            "POST", f"/api/v1/namespaces/{namespace}/events", f"posting Event {reason}", body=body
        )

    def create_region(self, body: dict[str, Any]) -> bool:
        """Create a Region unless one of that name exists; True when created."""
        created = self._request(
            "POST",
            f"{_CORRAL}/regions",
            f"creating Region {body['metadata']['name']}",
            body=body,
            query=[("fieldManager", FIELD_MANAGER)],
            conflict_ok=True,
        )
        return created is not None

    def patch_workerpool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        # A pool deleted meanwhile has no status left to report: 404 is fine.
        self._merge_patch(
            f"{_CORRAL}/namespaces/{namespace}/workerpools/{name}/status",
            f"writing the status of WorkerPool {namespace}/{name}",
            {"status": status},
        )

    def patch_region_status(self, name: str, status: dict[str, Any]) -> None:
        self._merge_patch(
            f"{_CORRAL}/regions/{name}/status",
            f"writing the status of Region {name}",
            {"status": status},
        )

    # -- leases (leader election) ---------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
            f"Lease {namespace}/{name}",
        )

    def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the Lease; False when someone else created it first."""
        created = self._request(
            "POST",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            f"creating Lease {namespace}/{body['metadata']['name']}",
            body=body,
            conflict_ok=True,
        )
        return created is not None

    def replace_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """Replace the Lease at its resourceVersion; False on a conflict (someone
        else wrote it since we read it)."""
        name = body["metadata"]["name"]
        replaced = self._request(
            "PUT",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
            f"renewing Lease {namespace}/{name}",
            body=body,
            conflict_ok=True,
        )
        return replaced is not None
