"""corral.kube.Kube's list calls (`_list`): the path and selector each sends,
the items each returns (Regions and WorkerPools with their kind and
apiVersion put back) and the error naming what was listed. The API client is
a fake that answers from a table, so no cluster is needed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3

from corral.kube import Kube, KubeError


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self._data = json.dumps(body).encode()

    def read(self) -> bytes:
        return self._data


class FakeApi:
    """Answers GETs from `answers` (path -> (status, body)); records each call."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, list[tuple[str, str]]]] = []

    def param_serialize(self, **kw: Any) -> tuple[Any, ...]:
        self.calls.append((kw["method"], kw["resource_path"], kw["query_params"]))
        return kw["method"], kw["resource_path"], kw["header_params"], kw["body"], None

    def call_api(self, method: str, url: str, **kw: Any) -> FakeResponse:
        answer = self.answers[url]
        if isinstance(answer, BaseException):
            raise answer
        return FakeResponse(*answer)


def kube(answers: dict[str, Any]) -> tuple[Kube, FakeApi]:
    api = FakeApi(answers)
    return Kube(api), api  # type: ignore[arg-type]


def test_list_pods_sends_the_label_selector_and_returns_the_items() -> None:
    k, api = kube({"/api/v1/namespaces/ns/pods": (200, {"items": [{"metadata": {"name": "a"}}]})})
    assert k.list_pods("ns", "app=x") == [{"metadata": {"name": "a"}}]
    assert api.calls == [("GET", "/api/v1/namespaces/ns/pods", [("labelSelector", "app=x")])]


def test_list_events_selects_the_kind_and_the_name() -> None:
    k, api = kube({"/api/v1/namespaces/ns/events": (200, {"items": []})})
    assert k.list_events("ns", "WorkerPool", "email") == []
    assert api.calls[0][2] == [
        ("fieldSelector", "involvedObject.kind=WorkerPool,involvedObject.name=email")
    ]


def test_regions_and_workerpools_get_their_kind_back() -> None:
    k, _ = kube(
        {
            "/apis/corral.dev/v1alpha1/regions": (200, {"items": [{"spec": {}}]}),
            "/apis/corral.dev/v1alpha1/namespaces/a/workerpools": (200, {"items": [{"n": 1}]}),
            "/apis/corral.dev/v1alpha1/namespaces/b/workerpools": (200, {}),
        }
    )
    assert k.list_regions() == [{"apiVersion": "corral.dev/v1alpha1", "kind": "Region", "spec": {}}]
    assert k.list_workerpools(["a", "b"]) == [
        {"apiVersion": "corral.dev/v1alpha1", "kind": "WorkerPool", "n": 1}
    ]


def test_a_refused_list_names_what_was_listed_and_the_cause() -> None:
    k, _ = kube({"/api/v1/namespaces/ns/pods": (403, {"message": "pods is forbidden"})})
    with pytest.raises(KubeError, match=r"^listing pods app=x in ns: HTTP 403: pods is forbidden$"):
        k.list_pods("ns", "app=x")


@pytest.mark.parametrize(
    "failure",
    [
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]
            "/api/v1/namespaces/ns/pods",
            urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
        ),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104)),
    ],
)
def test_an_api_server_that_does_not_answer_is_a_kube_error(failure: Exception) -> None:
    # Refused or reset: the callers' KubeError paths must run (a kopf retry,
    # the token minted for an unwritten Secret revoked), not a urllib3 error.
    k, _ = kube({"/api/v1/namespaces/ns/pods": failure})
    with pytest.raises(
        KubeError, match="listing pods app=x in ns: no answer from the API server"
    ) as raised:
        k.list_pods("ns", "app=x")
    assert raised.value.status is None
