"""Derive the long-context filler from the golden traces (data, not upstream code) into data/long_context.json.

BFCL's ``multi_turn_long_context`` category pads the backends with fixed filler: extra text appended to files,
many empty files in each innermost directory, extra credit cards and bookings, and long extra fields in some
replies. All of it is visible in the golden traces' states and result strings, so it is recovered here by
comparing the long-context traces with the task configs. What no trace shows (the file whitelist, the automobile and
transaction-history fillers, the long weather report) is copied from upstream into data/long_context_upstream.json
instead, whose keys win (see data/SOURCE.md). Run:

    python -m tools.bfcl.derive_long_context tests/data/bfcl/golden envs/function_calling/data
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tools.bfcl.session import parse_python_call

logger = logging.getLogger(__name__)
ELLIPSIS = "__Ellipsis__"
OUT = Path(__file__).resolve().parent / "data" / "long_context.json"


def _read(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _python_list(text: str) -> list[Any]:
    """A Python list repr; the filler holds the ``Ellipsis`` object, written as :data:`ELLIPSIS`."""
    node = ast.parse(text, mode="eval").body
    assert isinstance(node, ast.List), text[:80]
    return [
        ELLIPSIS if isinstance(item, ast.Name) and item.id == "Ellipsis" else ast.literal_eval(item)
        for item in node.elts
    ]


def _set_once(found: dict[str, Any], key: str, value: Any) -> None:
    if key in found and found[key] != value:
        raise ValueError(f"inconsistent long-context filler for {key!r}: {found[key]!r} vs {value!r}")
    found[key] = value


def _common_suffix(lists: list[list[Any]]) -> list[Any]:
    suffix = lists[0]
    for other in lists[1:]:
        size = 0
        while size < min(len(suffix), len(other)) and suffix[len(suffix) - 1 - size] == other[len(other) - 1 - size]:
            size += 1
        suffix = suffix[len(suffix) - size :]
    return suffix


def _walk_files(spec: dict[str, Any], node: dict[str, Any], found: dict[str, Any]) -> None:
    innermost = all(entry["type"] != "directory" for entry in spec.values())
    for name, entry in spec.items():
        child = node["contents"][name]
        if entry["type"] == "directory":
            _walk_files(entry["contents"], child, found)
        elif child["content"] == entry["content"]:
            found.setdefault("files_without_extension", set()).add(name)
        else:
            assert child["content"].startswith(entry["content"]), name
            _set_once(found, "file_content_extension", child["content"][len(entry["content"]) :])
    if innermost:
        _set_once(found, "populated_file_names", [name for name in node["contents"] if name not in spec])


def derive(golden_dir: Path, task_dir: Path) -> dict[str, Any]:
    traces = _read(golden_dir / "multi_turn_long_context.jsonl.gz")
    configs = {row["id"]: row["initial_config"] for row in _read(task_dir / "BFCL_v4_multi_turn_long_context.json.gz")}
    found: dict[str, Any] = {}
    watch_lists: list[list[Any]] = []
    histories: list[list[Any]] = []
    extra_records: dict[str, list[dict[str, Any]]] = {"credit_card_list": [], "booking_record": []}
    for trace in traces:
        config = configs[trace["id"]]
        state = trace["initial_state"]
        if "GorillaFileSystem" in state and "root" in config.get("GorillaFileSystem", {}):
            root_name = next(iter(config["GorillaFileSystem"]["root"]))
            spec = config["GorillaFileSystem"]["root"][root_name]["contents"]
            _walk_files(spec, state["GorillaFileSystem"]["root"], found)
        if "TravelAPI" in state:
            for key, records in extra_records.items():
                own = config.get("TravelAPI", {}).get(key, {})
                records.append({k: v for k, v in state["TravelAPI"][key].items() if k not in own})
        for turn in trace["turns"]:
            for call, result in zip(turn["calls"], turn["results"], strict=True):
                name = call.split("(", 1)[0]
                if name == "get_watchlist" and result.startswith("["):
                    watch_lists.append(_python_list(result))
                    continue
                if not result.startswith("{"):
                    continue
                try:
                    reply = json.loads(result)
                except json.JSONDecodeError:
                    continue
                if name == "get_stock_info" and "MA(5)" in reply:
                    _set_once(found, "ma_5_extension", reply["MA(5)"])
                    _set_once(found, "ma_20_extension", reply["MA(20)"])
                elif name == "get_order_details" and "metadata" in reply:
                    symbol = reply["symbol"]
                    template = {key: value.replace(symbol, "{symbol}") for key, value in reply["metadata"].items()}
                    _set_once(found, "order_detail_extension", template)
                elif name == "get_transaction_history" and "transaction_history" in reply:
                    histories.append(reply["transaction_history"])
                elif name == "get_available_stocks":
                    _, args, kwargs = parse_python_call(call)
                    sector = kwargs.get("sector", args[0] if args else None)
                    base = {"Technology": 4, "Automobile": 3}.get(sector)
                    if base is not None:
                        _set_once(found, f"{sector.lower()}_extension", reply["stock_list"][base:])
                elif name == "activateParkingBrake" and "parkingBrakeInstruction" in reply:
                    _set_once(found, "parking_brake_instruction", reply["parkingBrakeInstruction"])
                elif name == "displayCarStatus" and "metadata" in reply:
                    _set_once(found, "car_status_metadata_extension", reply["metadata"])
                elif name == "check_tire_pressure" and reply.get("car_info"):
                    _set_once(found, "car_status_metadata_extension", reply["car_info"])
                elif name == "estimate_distance" and "intermediaryCities" in reply:
                    _set_once(found, "intermediary_cities", reply["intermediaryCities"])
    if watch_lists:
        found["watch_list_extension"] = _common_suffix(watch_lists)
    if histories:
        found["transaction_history_extension"] = _common_suffix(histories)
    for key, records in extra_records.items():
        merged: dict[str, Any] = {}
        for extra in sorted(records, key=len, reverse=True):
            for record_id, record in extra.items():
                merged.setdefault(record_id, record)
        found[{"credit_card_list": "credit_card_extension", "booking_record": "booking_record_extension"}[key]] = merged
    found["files_without_extension"] = sorted(found.get("files_without_extension", set()))
    return found


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO)
    golden_dir, task_dir = (Path(arg) for arg in argv[:2])
    data = derive(golden_dir, task_dir)
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %s with keys %s", OUT, sorted(data))


if __name__ == "__main__":
    main(sys.argv[1:])
