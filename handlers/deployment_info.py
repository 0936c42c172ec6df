"""``codebus_deployment_info``: what is deployed where, in Prometheus terms.

The guide records a deployment by querying ``deployment_info{app=..., version=...}``;
nothing produced that series. This gauge does, from the worker that handles
``deployment.completed``, on that worker's ``/metrics``:

- ``codebus_deployment_info{app, environment, version} 1`` - the info idiom; a newer
  version of the same app and environment replaces the older series in this process;
- ``codebus_deployment_completed_timestamp_seconds{app, environment, version}`` - when
  it completed, so that with several replicas (each exporting what it saw) the current
  version is ``topk(1, codebus_deployment_completed_timestamp_seconds{app=..., environment=...})``.

The series live in the process: a restarted worker exports only what it has seen since.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Gauge

INFO = "codebus_deployment_info"
COMPLETED = "codebus_deployment_completed_timestamp_seconds"
_LABELS = ("app", "environment", "version")


class DeploymentInfo:
    """The two gauges in one registry, and the version each (app, environment) shows."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            INFO, "Deployed version of an app in an environment (1).", _LABELS, registry=registry
        )
        self.completed = Gauge(
            COMPLETED,
            "When this version of the app completed its deployment (unix seconds).",
            _LABELS,
            registry=registry,
        )
        self._current: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def record(self, app: str, environment: str, version: str, completed_at: float) -> bool:
        """``version`` of ``app`` completed in ``environment`` at ``completed_at``; False
        (and nothing changed) if a later completion is shown already - a late redelivery
        must not bring an old version back."""
        with self._lock:
            current = self._current.get((app, environment))
            if current is not None and current[0] > completed_at:
                return False
            if current is not None and current[1] != version:
                self.info.remove(app, environment, current[1])
                self.completed.remove(app, environment, current[1])
            self.info.labels(app, environment, version).set(1)
            self.completed.labels(app, environment, version).set(completed_at)
            self._current[(app, environment)] = (completed_at, version)
            return True


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, DeploymentInfo] = (
    weakref.WeakKeyDictionary()
)
_BY_REGISTRY_LOCK = threading.Lock()


def deployment_info(registry: CollectorRegistry) -> DeploymentInfo:
    """The gauges of ``registry`` (created on first use: a metric registers once)."""
    with _BY_REGISTRY_LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = DeploymentInfo(registry)
        return found


def promql_label(value: str) -> str:
    """``value`` as a PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
