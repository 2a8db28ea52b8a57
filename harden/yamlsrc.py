"""YAML documents that remember where each value came from.

PyYAML's composer already knows the line of every node; we keep a map from the path of each
value (a tuple of keys and indexes) to its 1-based line, so schema and semantic errors found
later can name the exact line of the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

PathT = tuple[Any, ...]


@dataclass(frozen=True)
class Document:
    data: Any
    file: str
    lines: dict[PathT, int]
    start_line: int = 1

    def line_of(self, path: PathT) -> int:
        """Line of the value at `path`, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.start_line


def _construct(node: yaml.Node, path: PathT, lines: dict[PathT, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError("YAML merge keys (<<) are not supported", file=file,
                                 line=key_node.start_mark.line + 1, hint="write the keys out")
            key = yaml.SafeLoader.construct_scalar(_LOADER, key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                key = _construct(key_node, path, {}, file)
            if key in out:
                raise InputError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                 field=_dotted(path + (key,)), hint="each key may appear once in a mapping")
            out[key] = _construct(value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1  # errors point at the key
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(child, path + (i,), lines, file) for i, child in enumerate(node.value)]
    return _LOADER.construct_object(node, deep=True)


_LOADER = yaml.SafeLoader("")


def _dotted(path: PathT) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


dotted = _dotted


def load_documents(text: str, file: str) -> list[Document]:
    """Parse every document in a YAML stream; YAML syntax errors become an `InputError` with a line."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        summary = f"malformed YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            summary += f" ({exc.context} that started on line {exc.context_mark.line + 1})"
        raise InputError(summary, file=file, line=line,
                         hint="check indentation, quoting and brackets around this line") from None
    docs = []
    for node in nodes:
        if node is None:
            continue
        lines: dict[PathT, int] = {}
        data = _construct(node, (), lines, file)
        docs.append(Document(data, file, lines, node.start_mark.line + 1))
    return docs


def load_file(path: str | Path) -> list[Document]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"file not found: {p}", file=str(p), hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {p}: {exc}", file=str(p)) from None
    return load_documents(text, str(p))
