"""The API reader (/api/v1/docs) in a real browser with no network beyond the app: ReDoc is served by the app."""
from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, CSP_PROBE

pytestmark = pytest.mark.e2e
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # ReDoc's attribution image: refused by img-src


def test_api_docs_draw_every_operation_with_no_request_leaving_the_app(live, browser):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{live.url}/api/v1/openapi.json") as r:
        spec = json.load(r)
    operations = sum(1 for item in spec["paths"].values() for method in item
                     if method in ("get", "post", "put", "patch", "delete"))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_PROBE)
    outside, console, errors = [], [], []

    def only_the_app(route):
        url = route.request.url
        if url.startswith(live.url + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # as on a network with no internet: record it and fail it
            outside.append(url)
            route.abort()

    context.route("**/*", only_the_app)
    try:
        page = context.new_page()
        page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live.url}/api/v1/docs")
        page.wait_for_selector("[data-section-id*='/paths/']", timeout=15000)
        # The menu lists every operation of the spec; the first is drawn with its method and path.
        page.wait_for_function("n => document.querySelectorAll('.operation-type').length >= n", arg=operations)
        assert page.locator("h2", has_text="Create a driver account").first.is_visible()
        assert "/api/v1/auth/register" in page.locator("main, body").first.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "40-api-docs.png"))
        violations = page.evaluate("window.__cspViolations")
    finally:
        context.close()
    assert outside == [], f"the docs reached beyond the app: {outside}"
    assert not errors, errors
    # The only thing the policy refuses is ReDoc's attribution logo (on its vendor's CDN), never a request made.
    assert set(violations) <= {f"img-src {REDOCLY_LOGO}"}, violations
    assert all(REDOCLY_LOGO in text for text in console), console
