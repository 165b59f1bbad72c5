"""Legacy spellings of routertool.yaml: `migrate` renames them in memory (one deprecation warning each) and
`migrated_text` makes the same change in the file's text, keeping its comments and layout (config.migrate_file).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .config_rules import at_line, invalid_config
from .config_schema import CURRENT_VERSION
from .yamlsafe import load_yaml


@dataclass(frozen=True)
class Rename:
    """A legacy key and its new spelling, as dotted paths."""
    old: str
    new: str


RENAMES = (Rename("secrets", "secret_files"), Rename("services.cliproxyapi", "services.cliproxyapi_plus"))


def migrate(raw: dict, lines: dict[str, int]) -> tuple[dict, dict[str, int], list[str]]:
    """Return the config in the current schema, its line index, and one deprecation warning per change."""
    data = dict(raw)
    warnings: list[str] = []
    problems: list[str] = []
    for rename in RENAMES:
        parent_path, _, old_key = rename.old.rpartition(".")
        new_key = rename.new.rpartition(".")[2]
        parent = _get(data, parent_path)
        if not isinstance(parent, dict) or old_key not in parent:
            continue
        if new_key in parent:
            problems.append(at_line(lines, rename.old, f"{rename.old}: legacy key given together with {rename.new}; "
                                                   f"keep only {rename.new}"))
            continue
        parent = dict(parent)
        parent[new_key] = parent.pop(old_key)
        data = _set(data, parent_path, parent)
        lines = {(rename.new + k[len(rename.old):] if k == rename.old or k.startswith(rename.old + ".")
                  or k.startswith(rename.old + "[") else k): v for k, v in lines.items()}
        warnings.append(f"deprecated key '{rename.old}' was read as '{rename.new}'; "
                        f"run `llm-router config migrate --write` to update the file")
    version = data.get("config_version")
    if version is None or version == 1:
        what = "missing config_version" if version is None else "config_version 1"
        warnings.append(f"{what} was read as config_version: {CURRENT_VERSION}; "
                        f"run `llm-router config migrate --write` to update the file")
        data["config_version"] = CURRENT_VERSION
    if problems:
        raise invalid_config(problems)
    return data, lines, warnings


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in filter(None, dotted.split(".")):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(data: dict, dotted: str, value: Any) -> dict:
    if not dotted:
        return value
    head, _, rest = dotted.partition(".")
    copy = dict(data)
    copy[head] = _set(dict(copy.get(head) or {}), rest, value) if rest else value
    return copy


def migrated_text(text: str, raw: dict) -> str:
    root, _ = load_yaml(text)  # already read by parse_text: within bounds
    edits: list[tuple[int, int, str]] = []
    for rename in RENAMES:
        key_node = _find_key_node(root, rename.old.split("."))
        if key_node is None or _get(raw, rename.new) is not None:
            continue
        new_key = rename.new.rpartition(".")[2]
        original = text[key_node.start_mark.index:key_node.end_mark.index]
        quote = original[0] if original[:1] in "\"'" else ""
        edits.append((key_node.start_mark.index, key_node.end_mark.index, f"{quote}{new_key}{quote}"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    if raw.get("config_version") in (None, 1):
        if "config_version" in raw:
            text = re.sub(r"(?m)^(\s*[\"']?config_version[\"']?\s*:\s*)1\b", rf"\g<1>{CURRENT_VERSION}", text, 1)
        elif text.lstrip().startswith("{"):
            brace = text.index("{")
            text = f'{text[:brace + 1]}"config_version": {CURRENT_VERSION}, {text[brace + 1:]}'
        else:
            text = f"config_version: {CURRENT_VERSION}\n{text}"
    return text


def _find_key_node(node: Any, parts: list[str]) -> Any:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if key_node.value == parts[0]:
            return key_node if len(parts) == 1 else _find_key_node(value_node, parts[1:])
    return None
