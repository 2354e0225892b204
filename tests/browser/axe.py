"""axe-core (Deque's accessibility engine) in the browser tests: the vendored axe.min.js and a check.

axe is put into a page as an init script (``context.add_init_script``), not with
``page.add_script_tag``: a script tag of inline text is what the pages' Content-Security-Policy
refuses (and every CSP report fails a browser test), while init scripts are outside the page's
policy. ``serious_violations(page)`` runs every axe rule (WCAG 2.0-2.2 A and AA and axe's best
practices) on the page as it is and returns what is serious or critical (and the few lesser rules
the audit named, in AUDITED), in a form that names
the rule, the element and axe's reason, so a failing test says what to fix.
"""
from __future__ import annotations

from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_JS = Path(__file__).resolve().parent / "vendor" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
BLOCKING = ("serious", "critical")
# Lesser rules the outside audit of issue 16 named: held at zero too, so they do not come back.
AUDITED = ("landmark-unique", "empty-table-header")

RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), why: n.failureSummary}))}));
}"""


def install(context) -> None:
    """Make ``window.axe`` available in every page the context opens."""
    context.add_init_script(path=str(AXE_JS))


def violations(page) -> list[dict]:
    """Every axe violation on the page now: [{id, impact, help, nodes: [{target, why}]}]."""
    page.wait_for_function("() => typeof window.axe === 'object'")  # a function: the pages' CSP forbids eval
    return page.evaluate(RUN)


def serious_violations(page) -> list[dict]:
    """The serious and critical axe violations on the page now, and those of the rules in AUDITED."""
    return [v for v in violations(page) if v["impact"] in BLOCKING or v["id"] in AUDITED]


def describe(found: list[dict]) -> str:
    """The violations as lines a person can act on: rule, impact, element, reason."""
    lines = []
    for v in found:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:6]:  # axe's reason is the last line of its failure summary
            lines.append(f"    {node['target']}: {node['why'].splitlines()[-1].strip() if node['why'] else ''}")
    return "\n".join(lines)
