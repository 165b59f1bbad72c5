"""The safe YAML reader of routertool.yaml and of rendered LiteLLM configs, and the text rules that go with it.

`load_yaml` refuses duplicate keys, alias bombs (more than MAX_YAML_NODES values or MAX_YAML_DEPTH levels once
expanded) and recursive aliases; `index_lines` maps every dotted path of the node tree to its line. CONTROL is the
one list of characters refused in every string (`one_line` writes them as escapes), and `shown`/`kind_of` describe
a value in a message. PyYAML is imported inside the functions only (see config.cached_parse).
"""
from __future__ import annotations

import re
from typing import Any

# Refused in every string and key of the config: C0 and C1 controls (newline, NUL, ...), DEL, and the Unicode line
# and paragraph separators, which YAML (and so LiteLLM's loader) also reads as line breaks.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_YAML_NODES = 100_000  # values a YAML document may hold once its aliases are expanded
MAX_YAML_DEPTH = 64  # nesting levels, aliases expanded


class YAMLProblem(Exception):
    """Why `load_yaml` refused a text: `message` (one line) and the 1-based `line` it points at, if any."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


_STRICT_LOADER: Any = None


def _strict_loader() -> Any:
    """PyYAML's safe loader (libyaml's when available: same result, faster) that also refuses duplicate keys."""
    global _STRICT_LOADER
    if _STRICT_LOADER is None:
        import yaml

        class StrictSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            def construct_mapping(self, node: Any, deep: bool = False) -> dict:
                if isinstance(node, yaml.MappingNode):  # before merges are flattened: `<<` keys may be overridden
                    seen: dict[Any, int] = {}
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":
                            continue
                        key = self.construct_object(key_node, deep=True)
                        try:
                            first = seen.get(key)
                        except TypeError:
                            continue  # unhashable: the base class reports it
                        if first is not None:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"duplicate key {shown(key)} (first on line {first}); only one may be "
                                            "given", key_node.start_mark)
                        seen[key] = key_node.start_mark.line + 1
                return super().construct_mapping(node, deep=deep)

        _STRICT_LOADER = StrictSafeLoader
    return _STRICT_LOADER


def load_yaml(text: str) -> tuple[Any, Any]:
    """(node tree, data) of a YAML text: the one YAML reader of routertool.yaml and of rendered LiteLLM configs.

    Raises YAMLProblem for a syntax error, a duplicate mapping key (PyYAML keeps the last one silently), aliases
    that expand to more than MAX_YAML_NODES values or MAX_YAML_DEPTH levels (a few-KB "billion laughs" document
    would otherwise fill memory in `index_lines` and everything that walks the data), and a recursive alias.
    """
    import yaml  # here, not at the top: see cached_parse

    loader = _strict_loader()(text)
    try:  # compose once: the node tree gives the line index, constructing it gives the data
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return node, loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        prefix = "" if problem.startswith("duplicate key") else "not valid YAML: "
        raise YAMLProblem(one_line(prefix + problem), mark.line + 1 if mark is not None else None) from None
    finally:
        loader.dispose()


def _check_expansion(root: Any) -> None:
    """Refuse a node graph whose aliases expand beyond MAX_YAML_NODES values or MAX_YAML_DEPTH levels, or that
    refers to itself. Each node is measured once, so the check costs what the document's text costs."""
    import yaml

    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) once expanded
    open_nodes: set[int] = set()

    def measure(node: Any, depth: int) -> tuple[int, int]:
        line = node.start_mark.line + 1
        if depth > MAX_YAML_DEPTH:
            raise YAMLProblem(f"nested deeper than {MAX_YAML_DEPTH} levels", line)
        known = measured.get(id(node))
        if known is None:
            if id(node) in open_nodes:
                raise YAMLProblem("an alias refers to the node that contains it (a recursive structure)", line)
            children: list[Any] = []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            open_nodes.add(id(node))
            values, levels = 1, 1
            for child in children:
                child_values, child_levels = measure(child, depth + 1)
                values += child_values
                levels = max(levels, child_levels + 1)
                if values > MAX_YAML_NODES:
                    break
            open_nodes.discard(id(node))
            known = measured[id(node)] = (values, levels)
        if known[0] > MAX_YAML_NODES:
            raise YAMLProblem(f"more than {MAX_YAML_NODES} values once its aliases are expanded (an alias "
                              "bomb?); write the values out or use fewer aliases", line)
        if depth + known[1] - 1 > MAX_YAML_DEPTH:
            raise YAMLProblem(f"nested deeper than {MAX_YAML_DEPTH} levels once its aliases are expanded", line)
        return known

    measure(root, 1)


def index_lines(node: Any, prefix: str, lines: dict[str, int]) -> None:
    """Add `dotted.path[i]` → 1-based line for every key and item under `node` (from `load_yaml`) to `lines`."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[path] = key_node.start_mark.line + 1
            index_lines(value_node, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines[path] = item.start_mark.line + 1
            index_lines(item, path, lines)


def one_line(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\u2028`): one printable line."""
    return CONTROL.sub(lambda m: escape_char(m.group()), text)


def escape_char(char: str) -> str:
    """One control character as a printable escape: `\\n`, `\\r`, `\\t`, else `\\uXXXX`."""
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\u{ord(char):04x}"


def kind_of(value: Any) -> str:
    """What `value` is, in words: "a string", "a mapping", "nothing", ..."""
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """`value` as a message shows it: a string in quotes, a list or mapping by its kind, anything else by repr."""
    return f'"{value}"' if isinstance(value, str) else repr(value) if not isinstance(value, (dict, list)) \
        else kind_of(value)
