"""The package's imports go one way, in the layers of docs/guide.md ("Layout", the one copy of the
layer map, read here): a module never imports one of a higher layer, not even inside a function,
and the units (top-level modules and subpackages) import each other without a cycle. Imports
inside functions count like any other, so no lazy import can be hiding a circle."""
import ast
import re
from pathlib import Path

import dualat

SRC = Path(dualat.__file__).parent
GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"


def guide_layers() -> dict[int, list[str]]:
    """{layer: [unit, ...]} from the numbered list of docs/guide.md "Layout": the `name.py` and
    `name/` in backticks of each item (`training/loop.py`-style paths inside an item are not units)."""
    text = GUIDE.read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.find("\n## ", 3) if "\n## " in section[3:] else len(section)]
    layers, current = {}, None
    for line in section.splitlines():
        item = re.match(r"(\d+)\. ", line)
        if item:
            current = int(item.group(1))
            layers[current] = []
        elif not line.startswith("   "):
            current = None
        if current is not None:
            layers[current] += [m.group(1) for m in re.finditer(r"`([a-z_0-9]+)(?:\.py|/)`", line)]
    return layers


LAYERS = guide_layers()
LAYER = {unit: n for n, units in LAYERS.items() for unit in units}


def _unit(module: str) -> str:
    """'dualat.training.dat' -> 'training'; 'dualat' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported dualat module, line) for every import statement, at any depth."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        me = _module_name(path)
        package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from . import x` / `from .pkg import module` name modules; otherwise the module itself
                targets = [f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod for a in node.names]
            else:
                continue
            out += [(me, t, node.lineno) for t in targets if t == "dualat" or t.startswith("dualat.")]
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py") or (p / "__init__.py").is_file()}
    assert units <= set(LAYER), f"give these a layer in docs/guide.md (Layout): {sorted(units - set(LAYER))}"


def test_no_module_imports_a_higher_layer():
    wrong = [f"{me} (layer {LAYER[_unit(me)]}) imports {t} (layer {LAYER[_unit(t)]}) at line {line}"
             for me, t, line in imports() if LAYER[_unit(t)] > LAYER[_unit(me)]]
    assert not wrong, "\n".join(wrong)


def test_units_import_each_other_without_a_cycle():
    edges: dict[str, set] = {}
    for me, t, _ in imports():
        if _unit(me) != _unit(t):
            edges.setdefault(_unit(me), set()).add(_unit(t))
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for unit in sorted(edges):
        if unit not in state:
            visit(unit, [unit])


def test_the_walk_sees_imports_inside_functions():
    """The test can fail: the walk finds function-level imports (this package has some)."""
    found = imports()
    assert any(me == "dualat.cli" for me, _, _ in found)
    assert len(found) > 100


def test_config_is_plain_data_below_the_registries_that_check_its_names():
    """The guide's Layout puts config in layer 1: it imports no registry; data/ and models/ add their name
    checks to it, and a bad name is still refused when a config is read."""
    from dualat import data, models
    from dualat.config import load_config
    from dualat.configcheck import NAME_CHECKS
    from dualat.errors import DualatError
    assert data.check_config_names in NAME_CHECKS and models.check_config_names in NAME_CHECKS
    for bad, key in (("data.name=mnistt", "data.name"), ("data.seeds=mix:2", "data.seeds"),
                     ("data.augment=rotate", "data.augment"), ("model.name=small_cnnn", "model.name"),
                     ("model.kwargs.depth=3", "model.kwargs")):
        try:
            load_config("digits", [bad])
        except DualatError as exc:
            assert f"config key {key}" in str(exc), (bad, exc)
        else:
            raise AssertionError(f"{bad} was accepted")
