"""Cashier touchscreen page (issue 5).

Thin blueprint: it only serves the page. All data comes from the JSON API and
Socket.IO; no business logic lives here.
"""

from flask import Blueprint, redirect, render_template, url_for

bp = Blueprint("till_pages", __name__)


@bp.get("/")
def index():
    return redirect(url_for("till_pages.till"))


@bp.get("/till")
def till():
    return render_template("till.html")
