"""The custom metrics the cost model bills are the ones the Lambda code emits: every metric call in
lambdas/classwire names a metric declared in classwire.metrics, every declared name is emitted somewhere,
and the cost model counts the declared names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from classwire import metrics
from classwire.classroom import REFUSALS, ClassroomService
from classwire.classroom_store import JoinRefused, Member, Published
from classwire.protocol import ERROR_CODES
from classwire.settings import Limits
from cost.estimate import custom_metric_count

PACKAGE = Path(metrics.__file__).parent
# The name-building functions of classwire.metrics and the values their argument may take.
FAMILIES = {"error_metric": ERROR_CODES, "refusal_metric": tuple(REFUSALS)}
# Calls that emit a metric: the core's injected sink (`self.metric(name, ...)`) and Powertools'
# `metrics.add_metric(name=..., ...)`.
EMITTERS = ("metric", "add_metric")


def emitted(source: str, where: str) -> tuple[set[str], list[str], int]:
    """The metric names a module's metric calls emit, the calls that name anything but a declared name
    (each as `where:line: ...`), and how many metric calls there are."""
    tree = ast.parse(source)
    names: dict[str, str] = {}  # local name -> attribute of classwire.metrics
    modules: set[str] = set()  # local names of the classwire.metrics module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "classwire.metrics":
            names.update({alias.asname or alias.name: alias.name for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module == "classwire":
            modules.update(alias.asname or alias.name for alias in node.names if alias.name == "metrics")
        elif isinstance(node, ast.Import):
            modules.update(
                alias.asname
                for alias in node.names
                if alias.name == "classwire.metrics" and alias.asname is not None
            )
    lambda_parameters = {
        id(node.body): {a.arg for a in node.args.args}
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
    }

    def declared_attribute(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            return node.attr
        return None

    found: set[str] = set()
    problems: list[str] = []
    calls = 0
    declared = set(metrics.declared())
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in EMITTERS:
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        argument = node.args[0] if node.args else keywords.get("name")
        if argument is None:
            continue
        calls += 1
        here = f"{where}:{node.lineno}: {ast.unparse(argument)}"
        attribute = declared_attribute(argument)
        if isinstance(argument, ast.Call) and declared_attribute(argument.func) in FAMILIES:
            family = declared_attribute(argument.func)
            assert family is not None  # it is one of FAMILIES
            build = getattr(metrics, family)
            value = argument.args[0] if len(argument.args) == 1 else None
            if isinstance(value, ast.Constant):
                if value.value not in FAMILIES[family]:
                    problems.append(f"{here}: {value.value!r} is not one of {FAMILIES[family]}")
                else:
                    found.add(build(value.value))
            elif value is not None:
                found.update(build(v) for v in FAMILIES[family])  # any of them, at run time
            else:
                problems.append(f"{here}: expected one argument")
        elif attribute is not None:
            value = getattr(metrics, attribute, None)
            if value in declared:
                found.add(value)
            else:
                problems.append(f"{here}: classwire.metrics.{attribute} is not a declared metric name")
        elif isinstance(argument, ast.Name) and argument.id in lambda_parameters.get(id(node), set()):
            pass  # a sink forwarding the name it is given: its callers are checked
        else:
            problems.append(f"{here}: not a name declared in classwire.metrics")
    return found, problems, calls


def test_every_metric_the_lambda_code_emits_is_declared_and_every_declared_one_is_emitted():
    found: set[str] = set()
    problems: list[str] = []
    calls = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        names, wrong, count = emitted(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
        found |= names
        problems += wrong
        calls += count
    assert not problems, "\n".join(problems)
    assert calls >= 25  # the core's sink calls and the handlers' add_metric calls were all seen
    assert found == set(metrics.declared()), (
        f"emitted but not declared: {sorted(found - set(metrics.declared()))}; "
        f"declared but never emitted: {sorted(set(metrics.declared()) - found)}"
    )


@pytest.mark.parametrize(
    "call",
    [
        'self.metric("EventsPublished", "Count", 1)',
        'self.metric(f"ConnectRefused_{refusal.reason}", "Count", 1)',
        'metrics.add_metric(name="Connects", unit="Count", value=1)',
        "metrics.add_metric(name=NOT_DECLARED, unit='Count', value=1)",
        "self.metric(error_metric('no_such_code'), 'Count', 1)",
        "self.metric(undeclared_name, 'Count', 1)",
    ],
)
def test_a_metric_name_not_from_the_declaration_is_found(call):
    source = f"from classwire.metrics import CONNECTS, error_metric\n{call}\n"
    _, problems, calls = emitted(source, "sample.py")
    assert calls == 1 and len(problems) == 1, problems


def test_declared_names_pass_the_check():
    source = (
        "from classwire.metrics import CONNECTS, error_metric, refusal_metric\n"
        "from classwire import metrics as names\n"
        "metrics.add_metric(name=CONNECTS, unit='Count', value=1)\n"
        "self.metric(names.RESENDS, 'Count', 1)\n"
        "self.metric(error_metric('internal'), 'Count', 1)\n"
        "self.metric(refusal_metric(refusal.reason), 'Count', 1)\n"
        "sink = lambda name, unit, value: metrics.add_metric(name=name, unit=unit, value=value)\n"
    )
    found, problems, calls = emitted(source, "sample.py")
    assert (problems, calls) == ([], 5)
    assert {"Connects", "Resends", "Error_internal", "ConnectRefused_too_fast"} <= found


def test_the_core_emits_declared_names_at_run_time():
    """The names built at run time (a refusal's reason, a protocol error's code) are declared ones."""
    emitted_names: list[str] = []

    class Store:
        reason = ""

        def join(self, member, connected_at_ms, reopen, batch):
            raise JoinRefused(self.reason, Published([], []))

        def admit(self, member):
            return True, None

    store = Store()
    service = ClassroomService(
        store=store,  # type: ignore[arg-type]  # a stand-in: connect() needs only join and admit
        connections=None,  # type: ignore[arg-type]  # refused joins and errors post nothing
        limits=Limits(),
        metric=lambda name, unit, value: emitted_names.append(name),
    )
    member = Member("c1", "room", "u1", "student")
    for reason in REFUSALS:
        store.reason = reason
        assert service.connect(member, 0) == REFUSALS[reason]
    service.handle(member, "not json")
    service.handle(member, '{"action": "dance"}')
    assert emitted_names == [
        *(f"ConnectRefused_{reason}" for reason in REFUSALS),
        "Error_bad_request",
        "Error_unknown_action",
    ]
    assert set(emitted_names) <= set(metrics.declared())


def test_the_cost_model_counts_the_declared_names_and_a_cold_start_per_function():
    declared = metrics.declared()
    assert len(declared) == len(set(declared))
    assert {f"ConnectRefused_{r}" for r in REFUSALS} | {f"Error_{c}" for c in ERROR_CODES} <= set(declared)
    assert custom_metric_count(4) == len(declared) + 4
