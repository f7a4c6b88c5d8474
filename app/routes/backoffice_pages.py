"""Back-office pages (issue 6): stock, conflicts, audit, cluster, reports.

Thin blueprint: it only serves the pages, to anyone. Each page logs in with the
till's PIN pad and gets everything from the JSON API (manager+) and Socket.IO; a
cashier is shown a "managers only" screen by the page itself (Users, admin only: an
"admins only" screen for a manager too, MIN_ROLE).
"""

from flask import Blueprint, redirect, render_template, url_for

bp = Blueprint("backoffice_pages", __name__)

PAGES = {
    "stock": "Stock",
    "conflicts": "Conflicts",
    "audit": "Audit log",
    "cluster": "Cluster",
    "reports": "Reports",
    "users": "Users",
}
# Pages above the manager's rank: the page shows its own "admins only" screen, the nav
# hides their link from a manager (the API refuses them anyway).
MIN_ROLE = {"users": "admin"}


@bp.get("/backoffice")
@bp.get("/backoffice/")
def index():
    return redirect(url_for("backoffice_pages.stock"))


def _page(name: str):
    def view():
        return render_template(f"backoffice_{name}.html", page=name, pages=PAGES,
                               title=PAGES[name], min_roles=MIN_ROLE,
                               min_role=MIN_ROLE.get(name, "manager"))

    view.__name__ = name
    return view


for _name in PAGES:
    bp.add_url_rule(f"/backoffice/{_name}", endpoint=_name, view_func=_page(_name))
