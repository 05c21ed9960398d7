"""The structure the code promises (docs/ARCHITECTURE.md): who may import whom, and one
source for every option (a settings field with a flag, a profile key and a README line).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from capdisc.settings import (
    CompareSettings,
    RampSettings,
    StreamRampSettings,
    TargetConfig,
    ToolsSettings,
    WorkloadSettings,
    option_spec,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "capdisc"
README = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")


def _area(module: str) -> str:
    """``capdisc.loadgen.engine`` -> ``loadgen``; ``capdisc.schema`` -> ``schema``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.Module) -> Iterator[str]:
    """Modules imported anywhere in the file, except under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # "from capdisc.cli import compare" imports the submodule too
            for alias in node.names:
                sub = SRC.parent.joinpath(*node.module.split("."), alias.name)
                if sub.with_suffix(".py").is_file() or sub.is_dir():
                    yield f"{node.module}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[_module_name(path)] = set(_runtime_imports(tree))
    return graph


GRAPH = _graph()

# What each area may import of capdisc (besides itself). Leaves first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "durations": set(),
    "servermetrics": set(),
    "verdicts": {"servermetrics"},
    "schema": {"servermetrics", "verdicts"},
    "records": set(),
    "templates": set(),
    "simulator": {"errors"},
    "fields": {"durations", "errors"},
    "settings": {"durations", "errors", "fields", "templates", "verdicts"},
    "profiles": {"errors", "settings", "simulator"},
    "target": {"errors", "profiles", "records", "schema", "settings", "templates"},
    "apis": {"errors", "servermetrics", "settings", "target", "templates"},
    "metrics": {"errors", "records", "schema", "servermetrics", "verdicts"},
    "reports": {"durations", "metrics", "records", "schema", "servermetrics", "verdicts"},
    "results": {"errors", "schema"},
    "rundir": {"errors", "records", "results", "schema", "reports"},
    "loadgen": {
        "apis",
        "errors",
        "records",
        "rundir",
        "schema",
        "servermetrics",
        "settings",
        "target",
        "templates",
    },
    "progress": {"durations", "loadgen"},
    "strategies": {
        "",  # the package root, for __version__ only (the client ceiling is cached per version)
        "apis",
        "durations",
        "errors",
        "loadgen",
        "metrics",
        "profiles",
        "records",
        "results",
        "rundir",
        "schema",
        "servermetrics",
        "settings",
        "simulator",
        "target",
        "templates",
        "verdicts",
    },
    "cli": {
        "",
        "errors",
        "loadgen",
        "profiles",
        "progress",
        "records",
        "reports",
        "results",
        "rundir",
        "schema",
        "settings",
        "simulator",
        "strategies",
        "templates",
    },
    "__main__": {"cli"},
    "": set(),
}


def _documented_rules() -> dict[str, set[str] | None]:
    """docs/ARCHITECTURE.md's table: each package and what it may import (None: anything)."""
    text = (SRC.parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Who may import whom", 1)[1].split("\n\n", 2)[1]
    rules: dict[str, set[str] | None] = {}
    for line in table.splitlines()[2:]:
        packages, allowed = (cell.strip() for cell in line.strip("|").split("|"))
        # What a parenthesis says is explanation, never a rule.
        allowed = re.sub(r"\([^)]*\)", "", allowed).split("never")[0]
        names = set(re.findall(r"`([\w.]+)`", allowed))
        if "package root" in allowed:
            names.add("")
        for package in re.findall(r"`(\w+)`", packages):
            rules[package] = None if allowed.startswith("everything") else names
    return rules


def test_the_documented_import_rules_are_the_tested_ones() -> None:
    """docs/ARCHITECTURE.md names every package, with the arrows this test enforces."""
    documented = _documented_rules()
    for area, allowed in ALLOWED.items():
        if area in ("", "__main__"):
            continue
        assert area in documented, f"docs/ARCHITECTURE.md does not name {area}"
        rule = documented[area]
        assert rule is None or rule == allowed, (area, rule, allowed)


def test_strategies_never_write_the_run_directory() -> None:
    """A strategy returns its result; only the command hands it to ``rundir.write_run``."""
    writes = [
        f"{_module_name(path)} imports {imported} from {module}"
        for path in sorted(SRC.rglob("*.py"))
        if _area(_module_name(path)) != "cli"
        for module, imported in _every_import(path)
        if module == "capdisc.rundir" and imported.startswith("write")
        if _area(_module_name(path)) != "rundir"
    ]
    assert not writes, writes


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_area_imports_only_what_it_may(module: str) -> None:
    """The layers hold: e.g. metrics never imports reports, nothing imports the CLI."""
    area = _area(module)
    assert area in ALLOWED, f"{module}: area {area!r} has no rule in ALLOWED"
    for imported in GRAPH[module]:
        if imported.split(".")[0] != "capdisc":
            continue
        target = _area(imported)
        if target == area:
            continue
        assert target in ALLOWED[area], f"{module} imports {imported}"


def _every_import(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) of every ``from capdisc... import name`` and ``import capdisc...`` in
    the file, lazy and type-checking imports included (name empty for a plain import)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (
                (alias.name, "") for alias in node.names if alias.name.startswith("capdisc")
            )
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("capdisc"):
            yield from ((node.module, alias.name) for alias in node.names)


def _module_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for module, imported in _every_import(path):
            sub = f"{module}.{imported}"
            deps.add(sub if sub in modules else module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_module_imports_itself_back() -> None:
    """No cycle between modules, lazy and type-checking imports included: a symbol two
    modules share lives in a leaf both import."""
    graph = _module_graph()
    cycles = []
    for start in sorted(graph):
        # Depth-first from each module: a path that comes back to it is a cycle.
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles[:5]


def test_no_private_name_crosses_modules() -> None:
    """``_name`` stays in its module: what another module needs is public, in a leaf."""
    crossing = [
        f"{_module_name(path)} imports {imported} from {module}"
        for path in sorted(SRC.rglob("*.py"))
        for module, imported in _every_import(path)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert not crossing, crossing


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_only_loadgen_touches_locust_and_only_metrics_and_reports_pandas(module: str) -> None:
    """gevent's patching stays in loadgen; pandas (slow to import) in the figure makers;
    Bokeh and Jinja2 in the reports."""
    area = _area(module)
    for imported in GRAPH[module]:
        root = imported.split(".")[0]
        if root in ("locust", "gevent", "geventhttpclient"):
            assert area == "loadgen", f"{module} imports {imported}"
        if root in ("pandas", "numpy", "scipy", "matplotlib"):
            assert area in ("metrics", "reports"), f"{module} imports {imported}"
        if root in ("bokeh", "jinja2", "markupsafe"):  # report.html's charts and templates
            assert area == "reports", f"{module} imports {imported}"


@pytest.mark.parametrize(
    "module", sorted(m for m, p in GRAPH.items() if (SRC / "/".join(m.split(".")[1:])).is_dir())
)
def test_package_inits_import_no_siblings(module: str) -> None:
    """Importing one module of a package never loads the rest of it (the CLI excepted)."""
    if module in ("capdisc.cli",):
        return  # the command line registers its command modules
    siblings = [i for i in GRAPH[module] if i.startswith(module + ".")]
    assert not siblings, f"{module}/__init__.py imports {siblings}"


def test_light_modules_stay_light() -> None:
    """The plain data of the engine and preflight load no renderer, simulator or pandas."""
    code = (
        "import sys\n"
        "import capdisc.loadgen.contract, capdisc.apis.preflight, capdisc.profiles\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(result.stdout.split())
    heavy = {
        m
        for m in loaded
        if m.startswith(("capdisc.reports", "capdisc.simulator.server", "capdisc.metrics"))
        or m.split(".")[0] in ("pandas", "locust", "gevent", "matplotlib")
    }
    assert not heavy


# -- one source for every option ------------------------------------------------------

COMMAND_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    "discover batch": (TargetConfig, WorkloadSettings, RampSettings),
    "discover tools": (TargetConfig, WorkloadSettings, ToolsSettings),
    "discover stream": (TargetConfig, WorkloadSettings, StreamRampSettings),
    "compare stream": (WorkloadSettings, CompareSettings),
}
PROFILE_TABLES: dict[type[BaseModel], str] = {
    TargetConfig: "target",
    WorkloadSettings: "workload",
    RampSettings: "batch",
    ToolsSettings: "tools",
    StreamRampSettings: "discover_stream",
    CompareSettings: "stream",
}


def _profile_key_sets(model: type[BaseModel], name: str) -> bool:
    """A profile whose table gives ``name`` (its default value, as a profile writes it)
    parses, and the table's model carries it as set."""
    from capdisc.profiles import parse_profile

    table = PROFILE_TABLES[model]
    host = "http://127.0.0.1:9"  # a plain target: its host is required
    value = model().model_dump(mode="json")[name] if name != "host" else host
    tables: dict[str, dict[str, object]] = {"target": {"host": host}}
    tables.setdefault(table, {})[name] = value
    profile = parse_profile(tables, name="probe", path=None)
    return name in getattr(profile, table).model_fields_set


def _command_flags(path: str) -> set[str]:
    import typer

    from capdisc.cli import app

    command = typer.main.get_command(app)
    for word in path.split():
        command = command.commands[word]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize("command", sorted(COMMAND_MODELS))
def test_every_settings_field_has_a_flag_a_profile_key_and_a_readme_line(command: str) -> None:
    """Adding an option is one field: its flag, profile key and README line must exist."""
    flags = _command_flags(command)
    for model in COMMAND_MODELS[command]:
        assert model.model_fields, model
        for name in model.model_fields:
            spec = option_spec(model, name)
            assert spec is not None, f"{model.__name__}.{name}: declare it with option()"
            assert _profile_key_sets(model, name), f"[{PROFILE_TABLES[model]}] {name}"
            if spec.profile_only:
                assert re.search(rf"\b{name}\b", README), f"README: profile key {name}"
                continue
            assert spec.flag in flags, f"{command}: no {spec.flag}"
            assert re.search(rf"{re.escape(spec.flag)}\b", README), f"README: {spec.flag}"


def test_an_unset_flag_keeps_the_profile_and_the_environment() -> None:
    """defaults < profile < environment < flags, for every field."""
    from capdisc.settings import Settings, resolve

    profile = RampSettings(interval=5.0, failure_threshold=2)
    env = Settings(LOAD_TEST_FAILURE_THRESHOLD=7)  # type: ignore[call-arg]
    merged = resolve(RampSettings, profile, env, {"interval": None, "max_users": 30})
    assert merged.interval == 5.0  # the profile's
    assert merged.failure_threshold == 7  # the environment over the profile
    assert merged.max_users == 30  # the flag
    assert merged.start_users == RampSettings().start_users  # the built-in default
    flagged = resolve(RampSettings, profile, env, {"failure_threshold": 0})
    assert flagged.failure_threshold == 0  # a flag over the environment


def test_no_module_needs_resource_at_import_time() -> None:
    """Windows has no ``resource`` module: no capdisc module imports it at module level."""
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert "resource" not in {a.name for a in node.names}, path
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "resource", path


def test_the_open_files_limit_is_skipped_where_there_is_none() -> None:
    """Without ``resource`` (Windows), raising the limit is skipped, with no warning."""
    code = (
        "import sys\n"
        "from capdisc.loadgen.engine import ensure_file_limit\n"
        "sys.modules['resource'] = None  # as on Windows: import resource fails\n"
        "print(ensure_file_limit(100_000))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


# Modules whose import pulls in locust.runners: imported at the top of a test module, they
# break pytest-xdist's workers (their thread waits under gevent's patched threading).
_RUNNER_MODULES = ("locust", "capdisc.loadgen.users", "capdisc.loadgen.engine",
                   "capdisc.loadgen.master", "capdisc.loadgen.distributed",
                   "capdisc.loadgen.shape", "capdisc.loadgen.context")  # fmt: skip


def test_no_test_module_imports_locust_runners_at_the_top() -> None:
    tests_dir = SRC.parents[1] / "tests"
    offenders = []
    for path in sorted(tests_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: a function may import in a subprocess
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == m or n.startswith(m + ".") for n in names for m in _RUNNER_MODULES):
                offenders.append(f"{path.relative_to(tests_dir)}:{node.lineno}")
    assert offenders == []
