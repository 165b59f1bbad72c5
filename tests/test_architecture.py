"""The structure rules of docs/architecture.md, checked: every module in a layer of the import contract, no import
cycle (imports inside functions count), no module over 500 lines outside standin/, the old dotted names alive,
and `lint-imports` failing on a planted upward import."""
from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "llm_router"
MAX_LINES = 500
ALIASES = {"llm_router.litellm_hooks": "llm_router.litellm.hooks",
           "llm_router.usage_hook": "llm_router.litellm.usage_hook",
           "llm_router.prove_worker": "llm_router.litellm.prove_worker",
           "llm_router.litellm_launch": "llm_router.litellm.launch"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["llm_router", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every llm_router module `name` imports, at the top or inside a function."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layered() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers")
    return [m.strip() for layer in contract["layers"] for m in layer.replace("|", ":").split(":")]


class StructureTest(unittest.TestCase):
    def test_every_module_is_in_a_layer_of_the_import_contract(self):
        layers = layered()
        loose = [name for name in modules() if name != "llm_router" and name not in ALIASES
                 and not name.startswith("llm_router.standin")
                 and not any(name == top or name.startswith(top + ".") for top in layers)]
        self.assertEqual(loose, [], "add these to [tool.importlinter] layers in pyproject.toml")

    def test_no_import_cycle(self):
        found = modules()
        graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
        cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

        def visit(node: str) -> None:  # Tarjan's strongly connected components
            index[node] = low[node] = counter[0]
            counter[0] += 1
            stack.append(node)
            on_stack.add(node)
            for nxt in graph[node]:
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

        for name in graph:
            if name not in index:
                visit(name)
        self.assertGreater(sum(map(len, graph.values())), 300)  # the walk really sees the imports
        self.assertEqual(cycles, [])

    def test_no_module_over_500_lines_outside_standin(self):
        long = {name: n for name, path in modules().items()
                if not name.startswith("llm_router.standin")
                and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
        self.assertEqual(long, {})

    def test_every_module_opens_with_a_docstring(self):
        bare = [name for name, path in modules().items()
                if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None]
        self.assertEqual(bare, [])

    def test_old_dotted_names_are_the_new_modules(self):
        for old, new in ALIASES.items():
            if old in ("llm_router.prove_worker", "llm_router.litellm_launch"):
                continue  # run as `-m` (below); importing them would run them
            with self.subTest(old=old):
                self.assertIs(importlib.import_module(old), importlib.import_module(new))
        hooks = importlib.import_module("llm_router.litellm_hooks")
        self.assertTrue(callable(hooks.custom_auth))
        done = subprocess.run([sys.executable, "-m", "llm_router.prove_worker"], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        new = subprocess.run([sys.executable, "-m", "llm_router.litellm.prove_worker"], capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual((done.returncode, done.stdout), (new.returncode, new.stdout))


class ImportContractTest(unittest.TestCase):
    """`lint-imports` (run by .ci/run before the tests) fails on an import that runs up a layer."""

    def lint(self, tree: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        return subprocess.run([shutil.which("lint-imports"), "--config", str(tree / "pyproject.toml")],
                              capture_output=True, text=True, env=env, cwd=tree, timeout=300,
                              stdin=subprocess.DEVNULL)

    def test_a_planted_upward_import_breaks_the_contract(self):
        if shutil.which("lint-imports") is None:
            self.skipTest("import-linter is not installed (uv sync --group test)")
        tree = Path(tempfile.mkdtemp(prefix="layers-"))
        self.addCleanup(shutil.rmtree, tree, True)
        shutil.copytree(PACKAGE, tree / "src" / "llm_router", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
        clean = self.lint(tree)
        self.assertEqual(clean.returncode, 0, clean.stdout + clean.stderr)
        planted = tree / "src" / "llm_router" / "supervisor" / "health.py"
        upward = "\n\ndef _upward():\n    from .. import switch  # noqa\n"
        planted.write_text(planted.read_text(encoding="utf-8") + upward, encoding="utf-8")
        broken = self.lint(tree)
        self.assertNotEqual(broken.returncode, 0)
        self.assertIn("llm_router.supervisor.health -> llm_router.switch", broken.stdout)


if __name__ == "__main__":
    unittest.main()
