"""The pages work under their Content-Security-Policy (issue 12), in Debian's Chromium.

`default-src 'self'` blocks inline scripts, styles and handlers, `data:` images and
sockets to other origins. The browser reports each blocked thing as a
`securitypolicyviolation` event: there must be none, on the till and on every back-office
screen, and the live Socket.IO connection (same origin) must still come up.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from app.routes.backoffice_pages import MIN_ROLE, PAGES
from tests.browser.conftest import login as till_login
from tests.cluster.harness import DEMO_PINS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") +
                              " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def _violations(page: Page) -> list[str]:
    return page.evaluate("window.__cspViolations")


def test_till_and_back_office_run_with_no_policy_violation(page: Page, node):
    page.add_init_script(RECORD_VIOLATIONS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    till_login(page, node.url, "cashier")
    assert _violations(page) == []

    # The back office as a manager (the till's cashier session forgotten first).
    page.evaluate("sessionStorage.clear(); localStorage.clear()")
    page.context.clear_cookies()
    page.goto(f"{node.url}/backoffice/stock")
    page.get_by_test_id("user-manager").click()
    for digit in DEMO_PINS["manager"]:
        page.get_by_test_id(f"pin-key-{digit}").click()
    page.get_by_test_id("pin-enter").click()
    expect(page.get_by_test_id("who")).to_be_visible()
    # The live socket (same origin, through the policy's 'self') is connected.
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "on")
    assert _violations(page) == []
    for name in PAGES:
        page.goto(f"{node.url}/backoffice/{name}")
        if MIN_ROLE.get(name) == "admin":  # Users: a manager gets the page's refusal screen
            expect(page.get_by_test_id("backoffice-denied")).to_be_visible()
        else:
            expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "on")
        page.wait_for_timeout(300)  # charts, tables and the favicon load
        assert _violations(page) == [], name
    assert errors == []
