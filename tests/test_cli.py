"""The flexsk command line: bad arguments get a usage error, not a traceback; its layer."""

import ast
import importlib
from pathlib import Path

import pytest

import flexsk
from flexsk.cli import build_parser, int_at_least, main

from conftest import IMAGE_SIZE


@pytest.mark.parametrize("argv, message", [
    (["demo", "--n-per-class", "0"], "--n-per-class: expected an integer >= 1 and <= 40, got 0"),
    (["demo", "--n-per-class", "41"], "<= 40, got 41"),
    (["demo", "--image-size", "15"], "--image-size: expected an integer >= 8 and a multiple of 8"),
    (["demo", "--image-size", "0"], "--image-size"),
    (["demo", "--max-epochs", "0"], "--max-epochs: expected an integer >= 1, got 0"),
    (["demo", "--patience", "-1"], "--patience"),
    (["demo", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    (["demo", "--threads", "two"], "expected an integer, got 'two'"),
    (["bench", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_defaults_parse():
    args = build_parser().parse_args(["demo"])
    # max_epochs and patience: None, the estimator's defaults
    assert (args.n_per_class, args.image_size, args.max_epochs, args.patience,
            args.threads, args.jobs) == (2, 16, None, None, 1, None)


def test_int_at_least_accepts_valid_values():
    assert int_at_least(8, multiple_of=8)("24") == 24
    assert int_at_least(1, at_most=40)("40") == 40


def test_version(capsys):
    import flexsk

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flexsk {flexsk.__version__}"


def test_demo_passes_only_the_settings_it_is_given(monkeypatch, cache_dir, capsys):
    monkeypatch.setenv("FLEXSK_CACHE_DIR", str(cache_dir))
    given = []
    fit = flexsk.FlexTuner.fit
    defaults = (flexsk.FlexTuner(None).max_epochs, flexsk.FlexTuner(None).patience)

    def spy(self, *args, **kwargs):
        given.append((self.max_epochs, self.patience))
        return fit(self.set_params(max_epochs=1), *args, **kwargs)  # fast, whatever was given

    monkeypatch.setattr(flexsk.FlexTuner, "fit", spy)
    # one job: the strategies fit in this process, where the spy is
    demo = ["demo", "--arch", "conv4", "--image-size", str(IMAGE_SIZE), "--quiet", "--jobs", "1"]
    assert main(demo) == 0
    assert given == [defaults] * 7  # the estimator's own
    out = capsys.readouterr().out
    assert "20 training images (2 per class), 200 validation, 340 test" in out
    assert "| ft-fc (2) " in out
    given.clear()
    assert main(demo + ["--max-epochs", "7", "--patience", "3"]) == 0
    assert given == [(7, 3)] * 7


# -- layers: flexsk's modules import each other one way -----------------------------------

PACKAGE = Path(flexsk.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _from_base(package, node):
    """The absolute module of ``from <module> import ...`` written in ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _import_graph():
    """flexsk module -> the flexsk modules it imports, at any level (functions included)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(package, node)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
                # "from package import name": the submodule if name is one, else the package
                targets = [t for t in targets[:-1] if t in paths] or [base]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # "import flexsk.x.y as z" and the like
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] == "flexsk" and target != name:
                    imported.add(target)
        graph[name] = imported
    return graph


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_import_graph_is_read_right():
    graph = _import_graph()
    assert "flexsk.bench._runner" in graph["flexsk.bench"]  # from ._runner import run_bench
    assert "flexsk.bench" in graph["flexsk.plot"]  # from .bench import read_results
    assert "flexsk.cli" in graph["flexsk.__main__"]


def _with_parent_packages(graph):
    """Importing ``a.b.c`` runs ``a/b/__init__.py`` first: count that as an import too."""
    return {name: targets | {t.rpartition(".")[0] for t in targets
                             if t.rpartition(".")[0] in graph
                             and not name.startswith(t.rpartition(".")[0] + ".")
                             and name != t.rpartition(".")[0]}
            for name, targets in graph.items()}


@pytest.mark.parametrize("parents", [False, True], ids=["modules", "with-parent-packages"])
def test_flexsk_modules_import_each_other_without_cycles(parents):
    graph = _import_graph()
    if parents:
        graph = _with_parent_packages(graph)
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_nothing_imports_the_cli_and_the_bench_core_draws_nothing():
    graph = _import_graph()
    assert [m for m, targets in graph.items() if "flexsk.cli" in targets] == ["flexsk.__main__"]
    for module in ("", "._config", "._results", "._runner", "._tables", "._reports"):
        assert "flexsk.plot" not in _reachable(graph, f"flexsk.bench{module}"), module


# -- __all__: each module's API is what the others import from it ---------------------------

def _static_all(path):
    """A module's ``__all__`` as its source writes it (a literal), or None; and the names
    its top level binds."""
    all_, bound = None, set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            bound |= names
            if "__all__" in names:
                all_ = list(ast.literal_eval(node.value))
    return all_, bound


def _imported_names():
    """(importing module, line, source module, name) of every ``from flexsk.x import name``.

    Absolute and relative imports, at any level (functions included); names that
    are submodules (``from . import _surgery``) are left out.
    """
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = []
    for name, path in sorted(paths.items()):
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _from_base(package, node)
            if base.split(".")[0] != "flexsk":
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" not in paths:
                    found.append((name, node.lineno, base, alias.name))
    return paths, found


def test_the_imported_names_are_read_right():
    _, found = _imported_names()
    found = {(importer, source, name) for importer, _, source, name in found}
    assert ("flexsk.cli", "flexsk.bench", "DEFAULTS") in found  # a relative import
    assert ("flexsk.bench._config", "flexsk._strategies", "STRATEGIES") in found  # "as _REGISTRY"
    assert ("flexsk.bench._reports", "flexsk", "plot") not in found  # a submodule
    assert not any(name == "_surgery" for _, _, name in found)


def test_all_lists_what_other_modules_import():
    """Every flexsk module defines ``__all__``; it names only what the module has, and
    every name another flexsk module imports from it, none of them private."""
    paths, found = _imported_names()
    problems = []
    alls = {}
    for name, path in sorted(paths.items()):
        if name == "flexsk.__main__":  # importing it runs the command line: read its source
            alls[name], module_vars = _static_all(path)
        else:
            module_vars = vars(importlib.import_module(name))
            alls[name] = module_vars.get("__all__")
        if alls[name] is None:
            problems.append(f"{path.relative_to(PACKAGE.parent)}: defines no __all__")
            continue
        problems += [f"{path.relative_to(PACKAGE.parent)}: __all__ lists {n!r}, "
                     f"which {name} does not define" for n in alls[name] if n not in module_vars]
        problems += [f"{path.relative_to(PACKAGE.parent)}: __all__ lists {n!r} twice"
                     for n in sorted(set(alls[name])) if alls[name].count(n) > 1]
    for importer, line, source, name in found:
        where = f"{paths[importer].relative_to(PACKAGE.parent)}:{line}"
        if name.startswith("_") and not name.startswith("__"):
            problems.append(f"{where}: imports the private name {name!r} from {source}")
        elif name not in (alls[source] or ()):
            problems.append(f"{where}: imports {name!r} from {source}, "
                            f"missing from {source}.__all__")
    assert not problems, "\n".join(["__all__ problems:"] + problems)
