"""GorillaFileSystem: an in-memory tree with one current directory; every operation is local to it."""

from __future__ import annotations

from typing import Any

from tools.bfcl.base import Backend, filler, long_context_data

__all__ = ["Directory", "File", "GorillaFileSystem"]

_INVALID_NAME_CHARS = '|/\\?%*:"><'


class File:
    def __init__(self, name: str, content: str = "") -> None:
        self.name = name
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and (self.name, self.content) == (other.name, other.content)

    def __repr__(self) -> str:
        return f"<<File: {self.name}, Content: {self.content}>>"


class Directory:
    def __init__(self, name: str, parent: Directory | None = None) -> None:
        self.name = name
        self.parent = parent
        self.contents: dict[str, File | Directory] = {}

    def __eq__(self, other: object) -> bool:
        # The parent pointer is not part of equality, as in BFCL.
        return isinstance(other, Directory) and (self.name, self.contents) == (other.name, other.contents)

    def __repr__(self) -> str:
        parent = self.parent.name if self.parent else None
        return f"<Directory: {self.name}, Parent: {parent}, Contents: {self.contents}>"

    def add_file(self, name: str, content: str = "") -> None:
        if name in self.contents:
            raise ValueError(f"File '{name}' already exists in directory '{self.name}'.")
        self.contents[name] = File(name, content)

    def add_directory(self, name: str) -> Directory:
        if name in self.contents:
            raise ValueError(f"Directory '{name}' already exists in directory '{self.name}'.")
        child = Directory(name, self)
        self.contents[name] = child
        return child


def _valid_name(name: str) -> bool:
    return not any(char in name for char in _INVALID_NAME_CHARS)


class GorillaFileSystem(Backend):
    doc_file = "gorilla_file_system"

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self.long_context = long_context
        self.root = Directory("/", None)
        if "root" in config:
            root_name = next(iter(config["root"]))
            self.root = self._load_tree(config["root"][root_name]["contents"], Directory(root_name, None))
        self._cwd = self.root

    def _load_tree(self, spec: dict[str, Any], node: Directory) -> Directory:
        innermost = True
        for name, entry in spec.items():
            if entry["type"] == "directory":
                innermost = False
                child = Directory(name, node)
                node.contents[name] = self._load_tree(entry["contents"], child)
            elif entry["type"] == "file":
                content = entry["content"]
                # BFCL appends the filler to every file whose name is not in its FILES_TAIL_USED list.
                if self.long_context and name not in long_context_data()["files_tail_used"]:
                    content += long_context_data()["file_content_extension"]
                node.contents[name] = File(name, content)
        if innermost and self.long_context:
            for name in filler("populated_file_names"):
                node.add_file(name)
        return node

    def _file(self, name: str) -> File | None:
        item = self._cwd.contents.get(name)
        return item if isinstance(item, File) else None

    def pwd(self) -> dict[str, str]:
        names = []
        node: Directory | None = self._cwd
        while node is not None:
            names.append(node.name)
            node = node.parent
        return {"current_working_directory": "/" + "/".join(reversed(names))}

    def ls(self, a: bool = False) -> dict[str, list[str]]:
        names = list(self._cwd.contents)
        if not a:
            names = [name for name in names if not name.startswith(".")]
        return {"current_directory_content": names}

    def cd(self, folder: str) -> dict[str, str]:
        folder = folder.rstrip("/") or "/"
        if folder not in {".", "..", "/"} and "/" in folder:
            return {"error": f"cd: {folder}: Unsupported path. Only one folder level at a time is supported."}
        if folder == "..":
            if self._cwd.parent:
                self._cwd = self._cwd.parent
            elif self.root == self._cwd:
                return {"error": "Cuurent directory is already the root. Cannot go back."}
            else:
                return {"error": "cd: ..: No such directory"}
            return {}
        if folder == ".":
            target: Directory | None = self._cwd
        elif folder == "/":
            target = self.root
        else:
            item = self._cwd.contents.get(folder)
            target = item if isinstance(item, Directory) else None
        if target is None:
            return {"error": f"cd: {folder}: No such directory. You cannot use path to change directory."}
        self._cwd = target
        return {"current_working_directory": target.name}

    def mkdir(self, dir_name: str) -> dict[str, str] | None:
        if not _valid_name(dir_name):
            return {"error": f"mkdir: cannot create directory '{dir_name}': Invalid character"}
        if dir_name in self._cwd.contents:
            return {"error": f"mkdir: cannot create directory '{dir_name}': File exists"}
        self._cwd.add_directory(dir_name)
        return None

    def touch(self, file_name: str) -> dict[str, str] | None:
        if not _valid_name(file_name):
            return {"error": f"touch: cannot touch '{file_name}': Invalid character"}
        if file_name in self._cwd.contents:
            return {"error": f"touch: cannot touch '{file_name}': File exists"}
        self._cwd.add_file(file_name)
        return None

    def echo(self, content: str, file_name: str | None = None) -> dict[str, str] | None:
        if file_name is None:
            return {"terminal_output": content}
        if not _valid_name(file_name):
            return {"error": f"echo: cannot touch '{file_name}': Invalid character"}
        if not file_name:
            return {"terminal_output": content}
        if file_name not in self._cwd.contents:
            return {"error": f"echo: cannot write to '{file_name}': No such file"}
        target = self._cwd.contents[file_name]
        if isinstance(target, File):
            target.content = content
            return None
        raise AttributeError("'Directory' object has no attribute '_write'")

    def cat(self, file_name: str) -> dict[str, str]:
        if not _valid_name(file_name):
            return {"error": f"cat: '{file_name}': Invalid character"}
        if file_name not in self._cwd.contents:
            return {"error": f"cat: {file_name}: No such file or directory"}
        item = self._cwd.contents[file_name]
        if isinstance(item, File):
            return {"file_content": item.content}
        return {"error": f"cat: {file_name}: Is a directory"}

    def find(self, path: str = ".", name: str | None = None) -> dict[str, list[str]]:
        matches: list[str] = []

        def walk(node: Directory, prefix: str) -> None:
            for child_name, child in node.contents.items():
                child_path = f"{prefix}/{child_name}"
                if name is None or name in child_name:
                    matches.append(child_path)
                if isinstance(child, Directory):
                    walk(child, child_path)

        start = self._navigate(path)
        if isinstance(start, dict):
            return start
        walk(start, path.rstrip("/"))
        return {"matches": matches}

    def _navigate(self, path: str | None) -> Directory | dict[str, str]:
        """The directory at ``path`` (relative to the current one, or absolute from the root)."""
        if path is None or path == ".":
            return self._cwd
        if path == "/":
            return self.root
        node = self.root if path.startswith("/") else self._cwd
        for part in path.strip("/").split("/"):
            child = node if part == "." else node.contents.get(part)
            if not isinstance(child, Directory):
                return {"error": f"cd: '{path}': No such file or directory"}
            node = child
        return node

    def wc(self, file_name: str, mode: str = "l") -> dict[str, Any]:
        if mode not in ("l", "w", "c"):
            return {"error": f"wc: invalid mode '{mode}'"}
        file = self._file(file_name)
        if file is None:
            return {"error": f"wc: {file_name}: No such file or directory"}
        if mode == "l":
            return {"count": len(file.content.splitlines()), "type": "lines"}
        if mode == "w":
            return {"count": len(file.content.split()), "type": "words"}
        return {"count": len(file.content), "type": "characters"}

    def sort(self, file_name: str) -> dict[str, str]:
        file = self._file(file_name)
        if file is None:
            return {"error": f"sort: {file_name}: No such file or directory"}
        return {"sorted_content": "\n".join(sorted(file.content.splitlines()))}

    def grep(self, file_name: str, pattern: str) -> dict[str, Any]:
        file = self._file(file_name)
        if file is None:
            return {"error": f"grep: {file_name}: No such file or directory"}
        return {"matching_lines": [line for line in file.content.splitlines() if pattern in line]}

    def du(self, human_readable: bool = False) -> dict[str, str]:
        def size(item: File | Directory) -> int:
            if isinstance(item, File):
                return len(item.content.encode("utf-8"))
            return sum(size(child) for child in item.contents.values())

        total: float = size(self._cwd)
        if not human_readable:
            return {"disk_usage": f"{total} bytes"}
        for unit in ("B", "KB", "MB", "GB", "TB"):
            if total < 1024:
                return {"disk_usage": f"{total:.2f} {unit}"}
            total /= 1024
        return {"disk_usage": f"{total:.2f} PB"}

    def tail(self, file_name: str, lines: int = 10) -> dict[str, str]:
        file = self._file(file_name)
        if file is None:
            return {"error": f"tail: {file_name}: No such file or directory"}
        all_lines = file.content.splitlines()
        lines = min(lines, len(all_lines))
        return {"last_lines": "\n".join(all_lines[-lines:])}

    def diff(self, file_name1: str, file_name2: str) -> dict[str, str]:
        first, second = self._file(file_name1), self._file(file_name2)
        if first is None or second is None:
            return {"error": f"diff: {file_name1} or {file_name2}: No such file or directory"}
        pairs = zip(first.content.splitlines(), second.content.splitlines(), strict=False)
        return {"diff_lines": "\n".join(f"- {a}\n+ {b}" for a, b in pairs if a != b)}

    def _place(self, target: Directory, name: str, item: File | Directory, *, share: bool) -> None:
        """Put a new node called ``name`` holding ``item``'s data into ``target`` (children are re-used)."""
        if isinstance(item, File):
            target.add_file(name, item.content)
        else:
            target.add_directory(name).contents = item.contents if share else dict(item.contents)

    def mv(self, source: str, destination: str) -> dict[str, str]:
        if source not in self._cwd.contents:
            return {"error": f"mv: cannot move '{source}': No such file or directory"}
        item = self._cwd.contents[source]
        if "/" in destination:
            return {
                "error": "mv: no path allowed in destination. Only file name and folder name is supported for this "
                "operation."
            }
        if destination in self._cwd.contents:
            target = self._cwd.contents[destination]
            if not isinstance(target, Directory):
                return {"error": f"mv: cannot move '{source}' to '{destination}': Not a directory"}
            if source in target.contents:
                return {"error": f"mv: cannot move '{source}' to '{destination}/{source}': File exists"}
            self._cwd.contents.pop(source)
            self._place(target, source, item, share=True)
            return {"result": f"'{source}' moved to '{destination}/{source}'"}
        self._cwd.contents.pop(source)
        self._place(self._cwd, destination, item, share=True)
        return {"result": f"'{source}' moved to '{destination}'"}

    def rm(self, file_name: str) -> dict[str, str]:
        if file_name not in self._cwd.contents:
            return {"error": f"rm: cannot remove '{file_name}': No such file or directory"}
        self._cwd.contents.pop(file_name)
        return {"result": f"'{file_name}' removed"}

    def rmdir(self, dir_name: str) -> dict[str, str]:
        if dir_name not in self._cwd.contents:
            return {"error": f"rmdir: cannot remove '{dir_name}': No such file or directory"}
        item = self._cwd.contents[dir_name]
        if not isinstance(item, Directory):
            return {"error": f"rmdir: cannot remove '{dir_name}': Not a directory"}
        if item.contents:
            return {"error": f"rmdir: failed to remove '{dir_name}': Directory not empty"}
        self._cwd.contents.pop(dir_name)
        return {"result": f"'{dir_name}' removed"}

    def cp(self, source: str, destination: str) -> dict[str, str]:
        if source not in self._cwd.contents:
            return {"error": f"cp: cannot copy '{source}': No such file or directory"}
        item = self._cwd.contents[source]
        if "/" in destination:
            return {
                "error": "cp: don't allow path in destination. Only file name and folder name is supported for this "
                "operation."
            }
        if destination in self._cwd.contents:
            target = self._cwd.contents[destination]
            if not isinstance(target, Directory):
                return {"error": f"cp: cannot copy '{source}' to '{destination}': Not a directory"}
            # An existing name inside the target raises (BFCL reports it as an execution error).
            self._place(target, source, item, share=False)
            return {"result": f"'{source}' copied to '{destination}/{source}'"}
        self._place(self._cwd, destination, item, share=False)
        return {"result": f"'{source}' copied to '{destination}'"}
