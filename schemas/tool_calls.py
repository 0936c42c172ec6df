"""The tool contract as handlers see it: ``call_tool`` typed by tool name.

Only a protocol (no I/O): ``tools.toolbox.Toolbox`` implements it at run time, the
test kit's fakes too. The overloads are generated from the tool servers' declarations
by ``scripts/gen_tool_calls.py`` (a test checks they are current).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel

Args = Mapping[str, Any] | BaseModel


class ToolCaller(Protocol):
    """Call a tool by its ``server.tool`` name; the result is the tool's result model."""

    async def call_tool(self, name: str, args: Args, *, role: str | None = None) -> Any:
        """Call one tool and return its typed result."""
        ...
