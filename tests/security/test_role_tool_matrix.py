"""Attack table of least privilege: every tool called under every role.

Every tool (39: the fakes of the eight tool servers) x every role: the unit roles of
``workers.toolbox.UNIT_ROLES`` (8) plus one role per tool server (``<server>.*``), 16.
Each call uses the tool's documented example arguments (``docs/tools.md``), so it is valid and
would run if permitted. A call the role may not make must be refused before the adapter
(denied calls executed: 0) and audited as ``denied``; a permitted one must run. Role
views cannot escalate: asking a view for another role is refused and audited too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tests.reports import report
from tools.config import ToolboxConfig
from tools.errors import ToolError, ToolPermissionDenied
from tools.guards.audit import AuditRecord
from tools.guards.permission import allowed
from tools.toolbox import Toolbox
from workers.toolbox import UNIT_ROLES, fake_servers

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tools.md"


def documented_examples() -> dict[str, dict[str, Any]]:
    """First ``toolbox.call_tool("name", {...})`` example of each tool in docs/tools.md."""
    examples: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S):
        try:
            tree = ast.parse(block)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call_tool"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
            ):
                try:
                    args = ast.literal_eval(node.args[1])
                except ValueError:
                    continue
                examples.setdefault(str(node.args[0].value), args)
    return examples


class MemorySink:
    """Audit records in a list."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def write(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def close(self) -> None:
        pass


async def test_every_role_calls_every_tool() -> None:
    servers = fake_servers()
    roles: dict[str, list[str]] = {**UNIT_ROLES}
    for server in servers:
        roles[f"{server.name}-admin"] = [f"{server.name}.*"]
    config = ToolboxConfig.model_validate(
        {"defaults": {"cache": False, "breaker": False, "retry_attempts": 1}, "roles": roles}
    )
    sink = MemorySink()
    executed: list[tuple[str, str]] = []
    async with Toolbox(servers, config=config, audit_sinks=[sink]) as toolbox:
        tools = [info.name for info in toolbox.list_tools()]
        examples = documented_examples()
        assert sorted(set(tools) - set(examples)) == [], "tools without a documented example"
        # Count what reaches the adapter call, below every guard.
        invoke = toolbox._invoke

        async def spy(bound: Any, call: Any) -> BaseModel:
            executed.append((call.role, call.name))
            return await invoke(bound, call)

        toolbox._invoke = spy  # type: ignore[method-assign]

        calls = denied = denied_executed = permitted = permitted_failed = 0
        escalations = escalations_refused = 0
        for current_role in roles:
            view = toolbox.as_role(current_role)
            for name in tools:
                calls += 1
                before = len(executed)
                may = allowed(roles[current_role], name)
                try:
                    await view.call_tool(name, examples[name])
                except ToolPermissionDenied:
                    denied += 1
                    assert not may, (current_role, name)
                except ToolError:
                    permitted_failed += 1  # a fake's own answer to the example (e.g. 404)
                else:
                    permitted += 1
                ran = len(executed) > before
                if not may and ran:
                    denied_executed += 1
                assert ran == may, (current_role, name)
                # The view refuses to act as another role, even one that may call the tool.
                escalations += 1
                before = len(executed)
                try:
                    await view.call_tool(name, examples[name], role="operator")
                except ToolPermissionDenied:
                    escalations_refused += 1
                except ToolError:
                    assert current_role == "operator"  # its own role: a normal call
                if current_role != "operator":
                    assert len(executed) == before, (current_role, name)
    audited_denials = sum(1 for r in sink.records if r.outcome == "denied")
    report(
        "security-role-tool",
        f"tools={len(tools)} roles={len(roles)} calls={calls} denied={denied} "
        f"denied_calls_executed={denied_executed} denials_audited={audited_denials} "
        f"escalations_tried={escalations - len(tools)} escalations_executed="
        f"{escalations - len(tools) - escalations_refused}",
    )
    assert len(tools) >= 39 and len(roles) == len(UNIT_ROLES) + len(servers)
    assert denied_executed == 0
    assert permitted + permitted_failed + denied == calls
    assert audited_denials == denied + escalations_refused
    assert escalations_refused == escalations - len(tools)  # every role but operator's own
