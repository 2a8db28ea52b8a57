"""YAML documents that remember where each value came from.

PyYAML's composer already knows the line of every node; we keep a map from the path of each
value (a tuple of keys and indexes) to its 1-based line, so schema and semantic errors found
later can name the exact line of the offending field.

Profiles, stacks and snapshots are input harden does not trust, so the YAML accepted is the
JSON-shaped subset Kubernetes manifests use:
- no aliases (`*name`): an alias re-expands its anchor at every use, so a 1 KB "billion laughs"
  document becomes gigabytes, and a recursive alias never ends; manifests never need them;
- nesting at most `MAX_DEPTH` deep, checked while composing, before Python's recursion limit is;
- only the tags of JSON values (str, int, float, bool, null, seq, map); a timestamp stays the text
  it was written as, since JSON (and the Kubernetes API) has no timestamp type;
- every scalar is constructed by a loader made for that one load, never a shared one: PyYAML's
  constructor keeps what it built in instance state, which a module-level loader would hold
  forever and share between threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

PathT = tuple[Any, ...]

# Real profiles nest about 12 deep (a NetworkPolicy peer's matchLabels); 64 leaves room for any
# manifest while staying far below the recursion limit of the composer and of everything after it.
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


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


def _line(mark: yaml.Mark | None) -> int | None:
    return mark.line + 1 if mark is not None else None


class _Loader(yaml.SafeLoader):
    """A SafeLoader for one stream that refuses aliases and deep nesting while composing."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise InputError(f"YAML aliases are not supported (*{event.anchor})", file=self.file,
                             line=_line(event.start_mark),
                             hint="write the value out in full; aliases can expand a small file into gigabytes")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise InputError(f"YAML nested more than {MAX_DEPTH} levels deep", file=self.file,
                                 line=_line(self.peek_event().start_mark),
                                 hint="profiles, stacks and manifests never nest this deep; check the brackets")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct(node: yaml.Node, path: PathT, lines: dict[PathT, int], loader: _Loader) -> Any:
    file = loader.file
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        _check_tag(node, _TAG + "map", "a mapping", file)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                raise InputError("YAML merge keys (<<) are not supported", file=file,
                                 line=key_node.start_mark.line + 1, hint="write the keys out")
            if isinstance(key_node, yaml.ScalarNode):
                # Keys are names: `80:` or `true:` as a key is the text, as Kubernetes' YAML reads it.
                _check_tag(key_node, None, "a key", file)
                key: Any = _utf8(key_node, key_node.value, file)
            else:
                raise InputError("a mapping key must be a scalar, not a mapping or list", file=file,
                                 line=key_node.start_mark.line + 1, field=_dotted(path) or None,
                                 hint="keys are names like `namespace`; quote a key that looks like something else")
            if key in out:
                raise InputError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                 field=_dotted(path + (key,)), hint="each key may appear once in a mapping")
            out[key] = _construct(value_node, path + (key,), lines, loader)
            lines[path + (key,)] = key_node.start_mark.line + 1  # errors point at the key
        return out
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, _TAG + "seq", "a list", file)
        return [_construct(child, path + (i,), lines, loader) for i, child in enumerate(node.value)]
    if node.tag == _TAG + "timestamp":
        return node.value
    _check_tag(node, None, "a scalar", file)
    try:
        return _utf8(node, loader.construct_object(node, deep=True), file)
    except InputError:
        raise
    except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError):
        short = node.tag.removeprefix(_TAG)
        raise InputError(f"{node.value!r} is not a valid !!{short}", file=file, line=node.start_mark.line + 1,
                         field=_dotted(path) or None, hint="remove the tag or fix the value") from None


def _utf8(node: yaml.Node, value: Any, file: str) -> Any:
    # A "\ud800" escape yields a lone surrogate, which no output (terminal, plan file) can encode.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("string holds an escape that is not a Unicode character (a lone surrogate)",
                             file=file, line=node.start_mark.line + 1,
                             hint="write the character itself, or a \\U escape of a real code point") from None
    return value


def _check_tag(node: yaml.Node, allowed: str | None, what: str, file: str) -> None:
    if node.tag == allowed or (allowed is None and node.tag in _SCALAR_TAGS):
        return
    shown = node.tag.replace(_TAG, "!!")
    raise InputError(f"unsupported YAML tag {shown} on {what}", file=file, line=node.start_mark.line + 1,
                     hint="remove the tag; harden reads plain YAML (strings, numbers, booleans, null, lists, mappings)")


def _dotted(path: PathT) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


dotted = _dotted


def load_documents(text: str, file: str) -> list[Document]:
    """Parse every document in a YAML stream; any YAML problem becomes an `InputError` with a line."""
    docs = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text, file)  # the reader checks the whole text for special characters here
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[PathT, int] = {}
            data = _construct(node, (), lines, loader)
            loader.constructed_objects.clear()
            docs.append(Document(data, file, lines, node.start_mark.line + 1))
    except yaml.reader.ReaderError as exc:
        where = text[:exc.position]
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise InputError(f"special character {char} is not allowed in YAML", file=file,
                         line=where.count("\n") + 1, field=None,
                         hint="remove it, or write it as an escape (\"\\t\") inside a double-quoted string") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = _line(mark)
        summary = f"malformed YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            summary += f" ({exc.context} that started on line {exc.context_mark.line + 1})"
        raise InputError(summary, file=file, line=line,
                         hint="check indentation, quoting and brackets around this line") from None
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", file=file, line=1,
                         hint="check the file is YAML text") from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def load_file(path: str | Path) -> list[Document]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"file not found: {p}", file=str(p), hint="check the path") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # ValueError: a path with a NUL byte; OSError includes a name too long for the file system.
        raise InputError(f"cannot read {p}: {exc}", file=str(p),
                         hint="check the path names a readable UTF-8 file") from None
    return load_documents(text, str(p))
