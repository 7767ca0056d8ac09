"""`Event`: something a user cares about, to be posted on an object.

The deciding functions (`scaling`, `status`) return these as data; the
reconciler collects them and the kopf handlers (or, outside a handler,
`corral.kube.Kube.post_event`) post them as Kubernetes Events, which is what
`kubectl describe workerpool` and `kubectl get events` show.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One Kubernetes Event: type Normal or Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str
