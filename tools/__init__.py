"""Tools: typed functions with JSON schemas, stateful BFCL-compatible backends, tool-call parsing, python_exec.

Imports nothing from ``envs``, ``servers`` or ``resrl_agent`` (the graph is tools <- envs <- servers).
"""

from tools.core import Tool, ToolError, ToolRegistry, ToolResult, tool
from tools.parsing import ParsedCalls, ToolCall, parse_tool_calls, repair_json

__all__ = [
    "ParsedCalls",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "parse_tool_calls",
    "repair_json",
    "tool",
]
