"""In-memory fakes: :class:`FakeToolbox` (``tools.fakes.toolbox``) for handler tests, and
one fake per tool server (``tools.fakes.docker``, ``.kubernetes``, ``.security_scanner``,
``.s3_storage``, ``.slack``, ``.prometheus``, ``.azure_devops``, ``.desktop_commander``)
for the embedded system, the demo and tests.

The server fakes are exported lazily (``from tools.fakes import FakeDockerServer``
imports only ``tools.fakes.docker``), so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tools.fakes.toolbox import FakeCall, FakeRoleView, FakeToolbox, NoFakeResponse, Response

if TYPE_CHECKING:
    from tools.fakes.azure_devops import FakeAzureDevOpsServer
    from tools.fakes.desktop_commander import FakeDesktopCommanderServer
    from tools.fakes.docker import FakeDockerServer
    from tools.fakes.kubernetes import FakeKubernetesServer
    from tools.fakes.prometheus import FakePrometheusServer
    from tools.fakes.s3_storage import FakeS3StorageServer
    from tools.fakes.security_scanner import FakeSecurityScannerServer
    from tools.fakes.slack import FakeSlackServer

#: Server fake -> its module (imported on first access).
SERVER_FAKES = {
    "FakeDockerServer": "tools.fakes.docker",
    "FakeKubernetesServer": "tools.fakes.kubernetes",
    "FakeSecurityScannerServer": "tools.fakes.security_scanner",
    "FakeS3StorageServer": "tools.fakes.s3_storage",
    "FakeSlackServer": "tools.fakes.slack",
    "FakePrometheusServer": "tools.fakes.prometheus",
    "FakeAzureDevOpsServer": "tools.fakes.azure_devops",
    "FakeDesktopCommanderServer": "tools.fakes.desktop_commander",
}

__all__ = [
    "FakeAzureDevOpsServer",
    "FakeCall",
    "FakeDesktopCommanderServer",
    "FakeDockerServer",
    "FakeKubernetesServer",
    "FakePrometheusServer",
    "FakeRoleView",
    "FakeS3StorageServer",
    "FakeSecurityScannerServer",
    "FakeSlackServer",
    "FakeToolbox",
    "NoFakeResponse",
    "Response",
]


def __getattr__(name: str) -> Any:
    module = SERVER_FAKES.get(name)
    if module is None:
        raise AttributeError(f"module 'tools.fakes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
