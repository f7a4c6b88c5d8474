"""The layering, checked on every import statement of app/ (in-function imports included).

- routes -> services -> models, one direction: nothing under services, models or utils
  imports Flask, Werkzeug, the routes, the Socket.IO extension or the wiring module;
  models and utils import no service.
- Three bounded contexts under services: the journal knows events, positions, epochs and
  the outbox, never the shop or the cluster; the shop never imports the cluster; the
  cluster never imports the shop. Only `app/__init__.py` and `app/wiring.py` know all three.

`KNOWN_DEBT` lists the edges that break these rules today, each with the step of issue 13
that removes it. The list must be exact: a new breach fails, and so does an entry that
no longer exists (delete it when its edge is cut), so the debt can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

# (python-socketio's client is the cluster's transport to other tills, not a web framework.)
FRAMEWORK = ("flask", "flask_socketio", "werkzeug", "app.routes", "app.extensions", "app.wiring")
SERVICES = "app.services"
CONTEXTS = ("shop", "journal", "cluster")
# The shop's tables, which the journal must not name (it knows only journal rows).
SHOP_TABLES = {"Product", "Category", "Sale", "SaleLine", "Payment", "Refund", "StockMovement",
               "User", "AuthSession", "LoginFailure", "ConflictRecord", "catalog", "sales",
               "people"}

# Empty since issue 13's step 2: the journal drives the shop through the state machine it
# owns (`journal/state_machine.py`, implemented by `shop/state_machine.py`).
KNOWN_DEBT: set[tuple[str, str]] = set()


def imports_of(path: Path) -> set[str]:
    """Every module (`import m`) and `module.name` (`from module import name`) `path` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_edges() -> set[tuple[str, str]]:
    return {(module_name(p), target) for p in APP.rglob("*.py") for target in imports_of(p)}


def context_of(module: str) -> str | None:
    parts = module.split(".")
    if module.startswith(SERVICES + ".") and len(parts) > 2 and parts[2] in CONTEXTS:
        return parts[2]
    return None


def breaches(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    bad = set()
    for source, target in edges:
        top = source.split(".")[1] if "." in source else ""
        if top in ("services", "models", "utils") and target.startswith(FRAMEWORK):
            bad.add((source, target))
        if top in ("models", "utils") and target.startswith((SERVICES, "app.routes")):
            bad.add((source, target))
        mine, theirs = context_of(source), context_of(target)
        if mine == "journal" and theirs in ("shop", "cluster"):
            bad.add((source, _module_of(target)))
        if mine == "journal" and target.startswith("app.models."):
            name = target.split(".")[2]
            if name in SHOP_TABLES:
                bad.add((source, ".".join(target.split(".")[:3])))
        if {mine, theirs} == {"shop", "cluster"}:
            bad.add((source, _module_of(target)))
    return bad


def _module_of(target: str) -> str:
    """`app.services.shop.apply.move_stock` -> `app.services.shop.apply` (a file that exists)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = APP.parent.joinpath(*parts[:end])
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts[:end])
    return target


def test_no_module_breaks_the_layering_beyond_the_known_debt():
    found = breaches(all_edges())
    new = sorted(found - KNOWN_DEBT)
    assert not new, "imports that break the layering (see this file's docstring):\n" + \
        "\n".join(f"  {s} -> {t}" for s, t in new)


def test_the_known_debt_list_holds_only_edges_that_still_exist():
    paid = sorted(KNOWN_DEBT - breaches(all_edges()))
    assert not paid, "debt that is paid off; delete it from KNOWN_DEBT:\n" + \
        "\n".join(f"  {s} -> {t}" for s, t in paid)


def test_the_rules_catch_each_kind_of_breach():
    """The checker itself: one made-up edge of each forbidden kind is caught."""
    made_up = {
        ("app.services.shop.sales", "flask.request"),
        ("app.services.audit", "app.routes.guards"),
        ("app.utils.money", "app.services.shop.pricing"),
        ("app.models.db", "app.services.node"),
        ("app.services.journal.hlc", "app.services.shop.pricing"),
        ("app.services.journal.events", "app.services.cluster.election"),
        ("app.services.journal.events", "app.models.Sale"),
        ("app.services.shop.sales", "app.services.cluster.runtime"),
        ("app.services.cluster.election", "app.services.shop.users"),
    }
    allowed = {
        ("app.services.shop.sales", "app.services.journal.events"),
        ("app.services.cluster.runtime", "app.services.journal.journal"),
        ("app.services.journal.store", "app.models.JournalEntry"),
        ("app.wiring", "flask.Flask"),
        ("app.routes.api_sales", "app.services.shop.sales"),
    }
    assert breaches(made_up) == made_up
    assert breaches(allowed) == set()
