"""Run files that survive a crash: atomic writes (temp file, fsync, rename, fsync the folder) and JSONL reading
that tells a torn last line (a crash mid-append: skipped with a warning) from a bad one (an error naming the line).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from resrl_agent.errors import RecordError

logger = logging.getLogger(__name__)

__all__ = ["append_line", "atomic_write", "atomic_write_text", "iter_jsonl_lines", "read_jsonl"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a temp file next to ``path``, fsync it and rename it over ``path``: a reader (or a
    crash at any point) sees the old file whole or the new one whole, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line and fsync it: after a crash, at most this line is torn (and readers skip it)."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def iter_jsonl_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line, read one at a time, except a torn last line: one without its
    newline that does not parse, which a crash mid-append leaves (skipped with a warning naming file and line)."""
    source = Path(path)
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            text = raw.decode("utf-8", errors="replace")
            if not raw.endswith(b"\n"):  # only the last line can lack its newline
                try:
                    json.loads(text)
                except json.JSONDecodeError:
                    logger.warning("%s:%d: the last line is incomplete (a write was cut off); skipped", source, number)
                    return
            yield number, text


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file (see :func:`iter_jsonl_lines` for a torn last line); any other line that is
    not a JSON object raises a RecordError naming file and line."""
    source = Path(path)
    if not source.is_file():
        raise RecordError(f"no file at {source}")
    records = []
    for number, text in iter_jsonl_lines(source):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise RecordError(f"{source}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(value, dict):
            raise RecordError(f"{source}:{number}: a {type(value).__name__}, not a JSON object")
        records.append(value)
    return records
