"""A report as one self-contained HTML page. Pure: `ReportData` in, a string out.

The page loads nothing: the Content-Security-Policy allows inline styles and
``data:`` images only, so no script runs and no request leaves the page even
if escaping were ever missed. Every value from the repository goes through
`esc`; charts come from `casbak.reportsvg`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec

from casbak import reportsvg
from casbak.reportmodel import (
    GrowthPoint,
    ReportData,
    Retention,
    TenantSection,
    VerifyState,
    Version,
    human_bytes,
    short_value,
    who,
)
from casbak.reportsvg import esc, when

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SHOWN_FINDINGS = 20

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:0 16px 48px;
color:#1d232a;background:#fff}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:18px;margin:32px 0 8px;
border-bottom:1px solid #d5dbe1;padding-bottom:4px}h3{font-size:15px;margin:22px 0 6px}
.meta{color:#56606b;margin:0}.meta b{color:#1d232a}.note{color:#56606b;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{text-align:left;
padding:3px 6px;border-bottom:1px solid #eef0f3;vertical-align:top}
code,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.ok{color:#1a7f37}.bad{color:#cf222e}.old{background:#ffebe9}.new{background:#dafbe1}
.chart{max-width:100%;height:auto;display:block}.ax{stroke:#8c959f}.gl{stroke:#eef0f3}
.tk,.lb{font-size:11px;fill:#56606b}.lb{fill:#1d232a}a .lb{fill:#0969da}
.ln{fill:none;stroke-width:2}.logical{stroke:#bf8700}.unique{stroke:#8250df}
.stored{stroke:#0969da}.pt{fill:#0969da}.hc{fill:#cf222e}
.key{display:inline-block;width:10px;height:10px;border-radius:5px;margin:0 4px 0 12px}
.o0{fill:#0969da;background:#0969da}.o1{fill:#bf8700;background:#bf8700}
.o2{fill:#cf222e;background:#cf222e}.o3{fill:#1a7f37;background:#1a7f37}
.o4{fill:#8250df;background:#8250df}.o5{fill:#57606a;background:#57606a}
.o6{fill:#e16f24;background:#e16f24}.o7{fill:#1b7c83;background:#1b7c83}
.o8{fill:#bf3989;background:#bf3989}.o9{fill:#6e7781;background:#6e7781}
.changes{table-layout:fixed}.changes th:nth-child(1){width:28%}
.changes th:nth-child(2){width:10%}
.version{border-left:3px solid #d5dbe1;padding-left:10px;margin:10px 0}
"""


def render(data: ReportData) -> str:
    """The whole page."""
    header = data.header
    title = f"casbak report: {header.repository}"
    body = [
        _header(data),
        _timeline(data),
        _growth(data.growth),
        _churn(data),
        _tenants(data.tenants),
        _retention(data.retention),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def _header(data: ReportData) -> str:
    header = data.header
    window = ""
    if header.since or header.until:
        since = when(header.since) if header.since else "the first snapshot"
        until = when(header.until) if header.until else "now"
        window = f"<p class=meta>Window: <b>{since}</b> to <b>{until}</b> UTC</p>"
    notes = "".join(f"<p class=note>{esc(note)}</p>" for note in data.notes)
    return (
        f"<h1>casbak report</h1>"
        f'<p class=meta>Repository <b class="mono" id="repository">'
        f"{esc(header.repository)}</b></p>"
        f"<p class=meta>casbak {esc(header.casbak_version)} · generated "
        f"{when(header.generated)} UTC · {header.snapshots:,} snapshots · "
        f"{header.tenants:,} tenants</p>{window}{_verify(header.verify)}{notes}"
    )


def _verify(state: VerifyState | None) -> str:
    if state is None:
        return "<p class=meta>Verify: not given (pass a 'casbak verify --json' result)</p>"
    verdict = (
        '<b class="ok">no damage</b>' if state.ok else f'<b class="bad">{state.damage} damaged</b>'
    )
    lines = "".join(
        f"<li>{esc(f.severity)} {esc(f.kind)} <code>{esc(f.location)}</code>: {esc(f.message)}</li>"
        for f in state.findings[:SHOWN_FINDINGS]
    )
    more = len(state.findings) - SHOWN_FINDINGS
    if more > 0:
        lines += f"<li>and {more} more</li>"
    return (
        f'<p class=meta id="verify">Verify ({esc(state.mode)}, {state.snapshots_checked:,} '
        f"snapshots): {verdict}</p>" + (f"<ul>{lines}</ul>" if lines else "")
    )


def _timeline(data: ReportData) -> str:
    counts = Counter(mark.operation for mark in data.marks)
    operations = [operation for operation, _ in counts.most_common()]
    classes = reportsvg.operation_classes(operations)
    legend = "".join(
        f'<span class="key {classes[op]}"></span>{esc(op)} ({counts[op]:,})' for op in operations
    )
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        f"<p class=note>Every snapshot ({len(data.marks):,}), one lane per operation; "
        f"hover a dot for its target and description.</p><p>{legend}</p>"
        f"{reportsvg.timeline(data.marks, operations)}</section>"
    )


def _growth(points: Sequence[GrowthPoint]) -> str:
    figures = ""
    if points:
        last = points[-1]
        dedup = last.logical / last.unique if last.unique else 1.0
        compression = last.unique / last.stored if last.stored else 1.0
        figures = (
            f"<p>Every snapshot in full would take <b>{human_bytes(last.logical)}</b>; "
            f"distinct documents <b>{human_bytes(last.unique)}</b> "
            f"(dedup ratio <b id=dedup-ratio>{dedup:.1f}x</b>); stored compressed "
            f"<b>{human_bytes(last.stored)}</b> (compression ratio "
            f"<b id=compression-ratio>{compression:.1f}x</b>; "
            f"overall <b>{dedup * compression:.1f}x</b>).</p>"
        )
    legend = (
        '<span class="key" style="background:#bf8700"></span>every snapshot in full'
        '<span class="key" style="background:#8250df"></span>distinct documents'
        '<span class="key" style="background:#0969da"></span>stored (compressed)'
    )
    return (
        '<section id="growth"><h2>Growth</h2>'
        "<p class=note>Running totals of tenant documents (log scale), one point per snapshot "
        f"or per time slice of many; objects gc removed since are not counted.</p>{figures}"
        f"<p>{legend}</p>{reportsvg.growth(points)}</section>"
    )


def _churn(data: ReportData) -> str:
    churn = data.churn
    shown = f"{len(churn.rows):,} of {churn.tenants_total:,} tenants"
    return (
        '<section id="churn"><h2>Churn</h2>'
        f"<p class=note>New versions per tenant over time ({shown}, busiest first; the figure "
        "on the right is the total). A linked name has a section below.</p>"
        f"{reportsvg.churn(churn)}</section>"
    )


def _tenants(sections: Sequence[TenantSection]) -> str:
    parts = ['<section id="tenants"><h2>Tenant history</h2>']
    if not sections:
        parts.append("<p>No tenant changed in this window.</p>")
    for section in sections:
        parts.append(
            f'<div class="tenant" id="{esc(section.anchor)}" '
            f'data-tenant="{esc(section.tenant_id)}">'
            f"<h3>{esc(section.tenant_id)}</h3>"
        )
        parts += [_version(version) for version in section.versions]
        if section.omitted:
            parts.append(
                f"<p class=note>{section.omitted:,} older versions not shown: "
                f"casbak report --tenant {esc(section.tenant_id)} shows them all.</p>"
            )
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _version(version: Version) -> str:
    span = when(version.first)
    if version.snapshots > 1:
        span += f" .. {when(version.last)}"
    author = who(version.provenance)
    where = "".join(
        f" · {esc(key)}={esc(value)}"
        for key, value in sorted(version.provenance.items())
        if key not in ("user", "host")
    )
    head = (
        f"<p><b class=mono>{esc(version.object[:12])}</b> {human_bytes(version.size)} · held by "
        f"{version.snapshots:,} snapshot{'' if version.snapshots == 1 else 's'} · {span}<br>"
        f"<span class=mono>{esc(version.snapshot_id[:12])}</span> {esc(version.operation)} "
        f"· target {esc(version.target_id)}"
        + (f" · by <b>{esc(author)}</b>" if author else "")
        + where
        + "</p>"
    )
    if version.description:
        head += f"<p class=note>{esc(version.description)}</p>"
    if version.initial:
        return f'<div class="version">{head}<p class=note>The first version stored.</p></div>'
    rows = "".join(
        f'<tr class="change"><td><code>{esc(change.path)}</code></td><td>{esc(change.kind)}</td>'
        f'<td class="old"><code>{_value(change.old)}</code></td>'
        f'<td class="new"><code>{_value(change.new)}</code></td></tr>'
        for change in version.changes
    )
    table = (
        '<table class="changes"><tr><th>field</th><th>change</th><th>old</th><th>new</th></tr>'
        f"{rows}</table>"
        if rows
        else "<p class=note>No field changed.</p>"
    )
    return f'<div class="version">{head}{table}</div>'


def _value(value: object) -> str:
    return "" if value is msgspec.UNSET else esc(short_value(value))


def _retention(retention: Retention) -> str:
    rows = "".join(
        f"<tr><td class=mono>{esc(r.id[:12])}</td><td>{when(r.timestamp)}</td>"
        f"<td>{esc(r.operation)}</td><td>{esc(r.target_id)}</td></tr>"
        for r in retention.removed
    )
    more = retention.removed_total - len(retention.removed)
    if more > 0:
        rows += f"<tr><td colspan=4>and {more:,} more</td></tr>"
    reasons = "".join(
        f"<li>{esc(reason)}: {number:,}</li>" for reason, number in retention.reasons.items()
    )
    removed = (
        f"<table><tr><th>snapshot</th><th>time (UTC)</th><th>operation</th><th>target</th></tr>"
        f"{rows}</table>"
        if rows
        else ""
    )
    return (
        '<section id="retention"><h2>Retention preview</h2>'
        f"<p>'casbak cleanup' with the repository's policy ({esc(retention.policy)}) would "
        f"remove <b id=retention-removed>{retention.removed_total:,}</b> snapshots now and keep "
        f"<b>{retention.kept_total:,}</b>. Kept because (a snapshot may have several reasons):"
        f"</p><ul>{reasons}</ul>{removed}</section>"
    )
