"""Server-rendered pages (no front-end build): the alert list, the detail, the log-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from connectors.feed.board import DISPOSITIONS, SEVERITIES, TPPO_DISPOSITIONS, Filters
from connectors.feed.users import User

WIB = timedelta(hours=7)
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#123a5a;color:#fff;padding:.6rem 1rem;display:flex;justify-content:space-between;align-items:center}
header a,header button{color:#fff} main{padding:1rem} table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#eef1f4} .sev-CRITICAL{color:#fff;background:#8b0000} .sev-HIGH{color:#8b0000;font-weight:600}
.sev-MEDIUM{color:#9a5b00} .sev-LOW,.sev-INFO{color:#44505c} .WITHDRAWN{opacity:.55;text-decoration:line-through}
form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin-bottom:.8rem} .counts span{margin-right:1rem}
.new{animation:flash 2s} @keyframes flash{from{background:#fff3b0}to{background:#fff}}
.card{background:#fff;padding:1rem;margin-bottom:1rem;border:1px solid #e3e6ea} .muted{color:#6b7785}
"""


def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return (datetime.fromtimestamp(ms / 1000, UTC) + WIB).strftime("%Y-%m-%d %H:%M WIB")


def layout(title: str, body: str, user: User | None, csrf: str = "") -> str:
    who = ""
    if user is not None:
        offices = "all offices" if user.role == "admin" else ", ".join(sorted(user.offices))
        who = (
            f"<span>{escape(user.name)} ({escape(user.role)}, {escape(offices)})</span> "
            f'<form method="post" action="/logout" style="display:inline">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button>Log out</button></form>'
        )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · Pora</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f'<body><header><a href="/"><strong>Pora</strong> alert feed</a><div>{who}</div></header>'
        f"<main>{body}</main></body></html>"
    )


def login_page(error: str = "") -> str:
    err = f'<p role="alert" style="color:#8b0000">{escape(error)}</p>' if error else ""
    body = (
        f'<div class="card" style="max-width:22rem"><h1>Log in</h1>{err}'
        '<form method="post" action="/login"><p><label>User <input name="name" autocomplete="username" required>'
        '</label></p><p><label>Password <input name="password" type="password" autocomplete="current-password" '
        'required></label></p><p><button type="submit">Log in</button></p></form></div>'
    )
    return layout("Log in", body, None)


def _options(values: list[str], chosen: str | None, label: str) -> str:
    opts = [f'<option value="">{escape(label)}</option>'] + [
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>' for v in values
    ]
    return "".join(opts)


def chart(per_day: dict[str, int]) -> str:
    """Alerts raised per day (WIB), the last 30 days that have any, as inline SVG bars."""
    days = list(per_day.items())[-30:]
    if not days:
        return '<p class="muted">No alerts yet.</p>'
    top = max(n for _, n in days)
    w, h = 12, 60
    heights = [(d, n, max(1, round(n / top * h))) for d, n in days]
    bars = "".join(
        f'<rect x="{i * (w + 2)}" y="{h - bar}" width="{w}" height="{bar}" fill="#2c6e9b">'
        f"<title>{escape(d)}: {n}</title></rect>"
        for i, (d, n, bar) in enumerate(heights)
    )
    return (
        f'<svg id="chart" role="img" aria-label="alerts per day" width="{len(days) * (w + 2)}" height="{h}">'
        f'{bars}</svg><div class="muted">{escape(days[0][0])} … {escape(days[-1][0])}</div>'
    )


def row(a: dict[str, Any]) -> str:
    subject = ", ".join(f"{k}: {v}" for k, v in a["subject"].items())
    return (
        f'<tr id="a-{escape(a["alert_id"])}" class="{escape(a["status"])}" data-office="{escape(a["office"])}" '
        f'data-rule="{escape(a["rule_id"])}" data-severity="{escape(a["severity"])}">'
        f'<td>{escape(when(a["emitted_at"]))}</td><td class="sev-{escape(a["severity"])}">{escape(a["severity"])}</td>'
        f'<td><a href="/alerts/{escape(a["alert_id"])}">{escape(a["rule_id"])}</a></td>'
        f"<td>{escape(a['office'])}</td><td>{escape(a['status'])} · {escape(a['triage'])}</td>"
        f'<td>{escape(a["reasons"][0] if a["reasons"] else "")}<div class="muted">{escape(subject)}</div></td></tr>'
    )


def list_page(
    user: User,
    csrf: str,
    views: list[dict[str, Any]],
    counts: dict[str, int],
    per_day: dict[str, int],
    filters: Filters,
    offices: list[str],
    rules: list[str],
    shown: int,
) -> str:
    f = filters
    statuses = ["RAISED", "AMENDED", "WITHDRAWN", "OPEN", "ACKNOWLEDGED", "ASSIGNED", "RESOLVED"]
    since = (datetime.fromtimestamp(f.since / 1000, UTC) + WIB).date().isoformat() if f.since else ""
    form = (
        '<form class="filters" method="get" action="/">'
        f'<select name="office" aria-label="office">{_options(offices, f.office, "every office")}</select>'
        f'<select name="rule" aria-label="rule">{_options(rules, f.rule, "every rule")}</select>'
        f'<select name="severity" aria-label="severity">'
        f"{_options(list(SEVERITIES), f.severity, 'any severity')}</select>"
        f'<select name="status" aria-label="status">{_options(statuses, f.status, "any status")}</select>'
        f'<label>since <input type="date" name="since" value="{escape(since)}"></label>'
        '<button type="submit">Filter</button> <a href="/">clear</a></form>'
    )
    count_html = "".join(
        f'<span><a href="/?{escape(urlencode({"rule": r}))}">{escape(r)}</a>: <b>{n}</b></span>'
        for r, n in counts.items()
    )
    filters_attr = " ".join(
        f'data-{k}="{escape(v)}"' for k, v in (("office", f.office), ("rule", f.rule), ("severity", f.severity)) if v
    )
    more = (
        f'<p class="muted">showing the newest {shown} of {sum(counts.values())}</p>'
        if shown < sum(counts.values())
        else ""
    )
    body = (
        f'{form}<div class="card counts" id="counts">{count_html or "No alerts for these filters."}</div>'
        f'<div class="card">{chart(per_day)}</div>'
        f'<p class="muted" id="live">live: connecting…</p>{more}'
        f'<table id="alerts" {filters_attr}><thead><tr><th>emitted</th><th>severity</th><th>rule</th><th>office</th>'
        f"<th>status</th><th>why</th></tr></thead><tbody>{''.join(row(v) for v in views)}</tbody></table>"
        '<script src="/static/feed.js"></script>'
    )
    return layout("Alerts", body, user, csrf)


def detail_page(user: User, csrf: str, a: dict[str, Any], people: str) -> str:
    evidence = "".join(
        f"<tr><td>{escape(e['name'])}</td><td>{escape(e['value'])}</td>"
        f"<td>{escape('+' + format(e['weight'], 'g') if e.get('weight') is not None else '')}</td></tr>"
        for e in a["evidence"]
    )
    history = "".join(
        f"<li>{escape(when(h['at']))}: {escape(h['status'])} ({escape(h['severity'])})</li>" for h in a["history"]
    )
    actions = "".join(
        f"<li>{escape(when(x['at']))}: {escape(x['action'])} by {escape(x['actor'])} ({escape(x['actor_role'])})"
        + (f" → {escape(x['assignee'])}" if x.get("assignee") else "")
        + (f" · {escape(x['disposition'])}" if x.get("disposition") else "")
        + (f" · “{escape(x['comment'])}”" if x.get("comment") else "")
        + "</li>"
        for x in a["actions"]
    )
    dispositions = (
        list(DISPOSITIONS)
        if a["rule_id"] == "tppo.screening"
        else [d for d in DISPOSITIONS if d not in TPPO_DISPOSITIONS]
    )
    choices = [x for x in ("ACKNOWLEDGE", "ASSIGN", "RESOLVE", "REOPEN", "COMMENT") if user.may(x)]
    form = (
        f'<form method="post" action="/alerts/{escape(a["alert_id"])}/actions" id="triage">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<select name="action" aria-label="action">{"".join(f"<option>{c}</option>" for c in choices)}</select> '
        f'<select name="disposition" aria-label="disposition"><option value="">disposition (to resolve)</option>'
        f"{''.join(f'<option>{d}</option>' for d in dispositions)}</select> "
        '<input name="assignee" placeholder="assignee (to assign)" aria-label="assignee"> '
        '<input name="comment" placeholder="comment" aria-label="comment" maxlength="2000"> '
        '<button type="submit">Record</button></form>'
    )
    subject = ", ".join(f"{escape(k)}: {escape(str(v))}" for k, v in a["subject"].items())
    body = (
        f'<p><a href="/">← all alerts</a></p><div class="card"><h1 class="sev-{escape(a["severity"])}">'
        f"{escape(a['rule_id'])} · {escape(a['severity'])}</h1><p>{escape(a['office'])} · {subject}</p>"
        f'<p>raised {escape(when(a["raised_at"]))} (event time), status <b id="status">{escape(a["status"])}</b>, '
        f'triage <b id="triage-state">{escape(a["triage"])}</b>, rules {escape(a["rule_version"])}</p>'
        f'<h2>Why</h2><ul id="reasons">{"".join(f"<li>{escape(r)}</li>" for r in a["reasons"])}</ul>'
        f"<h2>Evidence</h2><table><tr><th>fact</th><th>value</th><th>weight</th></tr>{evidence}</table></div>"
        f'<div class="card"><h2>Triage</h2>{form}<ol id="actions">{actions}</ol></div>'
        f'<div class="card"><h2>History</h2><ol>{history}</ol></div>'
        f'<div class="card"><h2>Recent crossings and stays</h2>{people}</div>'
    )
    return layout(a["rule_id"], body, user, csrf)


def people_table(crossings: list[tuple[Any, ...]], stays: list[tuple[Any, ...]]) -> str:
    c = "".join(f"<tr>{''.join(f'<td>{escape(str(v))}</td>' for v in r)}</tr>" for r in crossings)
    s = "".join(f"<tr>{''.join(f'<td>{escape(str(v))}</td>' for v in r)}</tr>" for r in stays)
    return (
        "<h3>Crossings</h3><table><tr><th>when (UTC)</th><th>direction</th><th>checkpoint</th><th>destination</th>"
        f"</tr>{c or '<tr><td colspan=4>none recorded</td></tr>'}</table>"
        "<h3>Hotel stays</h3><table><tr><th>check-in</th><th>action</th><th>establishment</th><th>region</th></tr>"
        f"{s or '<tr><td colspan=4>none recorded</td></tr>'}</table>"
    )
