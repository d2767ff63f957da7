"""BFCL-compatible stateful backends (our own code), checked against golden traces of the original ones.

``BFCLSession(initial_config, involved_classes, long_context=False)`` builds one task's backends;
``.execute("cd(folder='x')")`` runs one BFCL call string and returns the result string BFCL's checker sees;
``.state()`` returns every involved backend's public state in the golden-trace encoding.
"""

from tools.bfcl.encoding import decode_value, encode_value, result_to_string
from tools.bfcl.session import (
    BACKEND_CLASSES,
    BFCLSession,
    CallSyntaxError,
    func_docs,
    openai_tool,
    openai_tools,
    parse_python_call,
)

__all__ = [
    "BACKEND_CLASSES",
    "BFCLSession",
    "CallSyntaxError",
    "decode_value",
    "encode_value",
    "func_docs",
    "openai_tool",
    "openai_tools",
    "parse_python_call",
    "result_to_string",
]
