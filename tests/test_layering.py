"""The package's layers (``cseg_monai.LAYERS``): every import goes down, no cycles, lazy loader complete.

Imports are read from the source with ``ast``: module-level and function-local, absolute and
relative. A sub-package may import its own modules and those of LOWER layers only; two
sub-packages of one layer (e.g. ``transforms`` and ``metrics``) do not import each other.
Function-local imports are kept for heavy optional dependencies only, each with a reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import cseg_monai

PACKAGE = Path(cseg_monai.__file__).resolve().parent
#: the only modules a function may import locally: heavy optional extras (gui, crf, the GUI's browser test)
OPTIONAL = ("gradio", "pydensecrf", "playwright")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool, str]]:
    """``(imported module, line, function-local?, source line)`` of every import in ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    name = _module_name(path)
    out = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                targets.append(".".join(base + ([node.module] if node.module else [])))
            else:
                targets.append(node.module or "")
        elif isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        for target in targets:
            out.append((target, node.lineno, node.col_offset > 0, lines[node.lineno - 1]))
    return out


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _all_imports() -> dict[str, list[tuple[str, int, bool, str]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_sub_package_has_a_layer():
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    found |= {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert found == set(cseg_monai.LAYERS), f"sub-packages without a layer: {found - set(cseg_monai.LAYERS)}"


def test_imports_go_down_the_layers():
    bad = []
    for module, imports in _all_imports().items():
        src = _layer_of(module)
        for target, line, _, _ in imports:
            if not target.startswith("cseg_monai.") or src == "<root>":
                continue
            dst = _layer_of(target)
            if dst == src:
                continue
            a, b = cseg_monai.LAYERS[src], cseg_monai.LAYERS[dst]
            if b > a:
                bad.append(f"{module}:{line} imports {target}: {dst} (layer {b}) sits above {src} (layer {a})")
            elif b == a:
                bad.append(f"{module}:{line} imports {target}: {src} and {dst} share layer {a}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    """Module-level graph (function-local imports count): no strongly connected component."""
    imports = _all_imports()
    modules = set(imports)
    edges: dict[str, set[str]] = defaultdict(set)
    for module, items in imports.items():
        for target, *_ in items:
            # "from cseg_monai.x import y" may name a module x.y or a name in x
            for candidate in (target, target.rsplit(".", 1)[0]):
                if candidate in modules and candidate != module:
                    edges[module].add(candidate)
                    break
    # a package's __init__ importing its own modules, and those importing siblings through
    # absolute paths, is not a cycle of code: drop edges from a module to its own ancestors'
    # __init__ (Python resolves them without re-entering the module)
    for module in list(edges):
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(modules):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_function_local_imports_only_for_heavy_optional_dependencies():
    bad, unexplained = [], []
    for module, items in _all_imports().items():
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
        lines = path.read_text().splitlines()
        for target, line, local, text in items:
            if not local:
                continue
            if not target.startswith(OPTIONAL):
                bad.append(f"{module}:{line}: {text.strip()}")
            elif "#" not in text and not lines[line - 2].strip().startswith("#"):
                unexplained.append(f"{module}:{line}: {text.strip()}")
    assert not bad, "function-local imports of required modules (import them at the top):\n" + "\n".join(bad)
    assert not unexplained, "function-local imports without a one-line reason:\n" + "\n".join(unexplained)


def test_lazy_loader_reaches_every_sub_package():
    """In a fresh interpreter: ``cseg_monai.postprocessing`` first (it was unreachable once), then the
    loader itself (``cseg_monai.__getattr__``) for every name, whatever was imported before."""
    code = (
        "import cseg_monai, types\n"
        "assert cseg_monai.postprocessing.__name__ == 'cseg_monai.postprocessing'\n"
        "for name in cseg_monai.LAYERS:\n"
        "    m = cseg_monai.__getattr__(name)\n"
        "    assert isinstance(m, types.ModuleType) and m.__name__ == 'cseg_monai.' + name, (name, m)\n"
        "print(len(cseg_monai.LAYERS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(len(cseg_monai.LAYERS))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cseg_monai.nothing  # noqa: B018
