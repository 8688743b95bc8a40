"""The board (projector) and the instructor's page: self-contained HTML, nothing loaded from the internet.

The board shows display names only (pseudonyms), never a real name or a token, and each
entry's `autograder verify` result; it follows ``/api/events/{code}/stream`` (server-sent
events) and redraws the table and the accuracy-vs-annotations scatter without a reload. The admin page asks for the
event code and admin token (or reads them from the URL fragment, which never reaches
the server) and calls the ``/api/admin`` routes with the token as a Bearer header.
"""

from __future__ import annotations

import html

_STYLE = """
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:0;padding:1.5rem 2.5rem}
h1{font-size:2.4rem;margin:.2rem 0} .muted{color:#aaa} code{background:#222;padding:.1rem .4rem;border-radius:4px}
table{border-collapse:collapse;font-size:1.35rem;margin-top:.5rem} th,td{padding:.25rem .8rem;text-align:right;white-space:nowrap} svg{flex:none}
th{border-bottom:2px solid #555;color:#ccc} td.name,th.name{text-align:left}
tr.passed td.name{color:#7fdc7f} td.verified{text-align:left;font-size:1rem;color:#9cf} tr.waiting{color:#888} .banner{background:#a33;color:#fff;padding:.5rem 1rem;
font-size:1.4rem;display:none;margin:.5rem 0} .wrap{display:flex;gap:2rem;align-items:flex-start}
svg text{fill:#ccc;font-size:12px} p.rule{font-size:1.2rem}
"""

_BOARD_JS = """
const CODE = document.body.dataset.code, ROWS = 18;  // what a projector shows
// the instructor's board link carries ?key=: its stream is never refused (autograder.event.limits)
const KEY = new URLSearchParams(location.search).get('key'), Q = KEY ? `?key=${encodeURIComponent(KEY)}` : '';
document.getElementById('join').textContent = document.body.dataset.roster === '1' ?
  `course.event.join("${location.origin}", "<your personal code>")` :
  `course.event.join("${location.origin}", "${CODE}", "your name")`;
const pct = a => a === null ? '' : (100 * a).toFixed(1) + '%';
function cell(tr, cls, text) { const td = document.createElement('td'); td.className = cls;
  td.textContent = text; tr.appendChild(td); }
function verdict(r) {  // `autograder verify`: the winners' notebooks re-run in the grader
  if (r.verified === 'verified') return 'verified';
  if (r.verified === 'differs') return r.verified_accuracy === null ? 'differs: no submission in the re-run' :
    `differs: ${pct(r.verified_accuracy)} with ${r.verified_annotations}`;
  if (r.verified === 'missing') return 'no notebook';
  if (r.verified === 'review') return `review: ${r.verified_note}`;
  return '';
}
function render(b) {
  document.getElementById('rule').textContent = b.rule;
  document.getElementById('count').textContent =
    `${b.participants} joined, ${b.submitted} submitted`;
  const banner = document.getElementById('frozen');
  banner.style.display = b.frozen || b.closed ? 'block' : 'none';
  banner.textContent = b.closed ? 'The event is closed.' :
    'The board is frozen for the last minutes: results will be revealed at the end.';
  const body = document.querySelector('#board tbody');
  body.replaceChildren();
  const shown = b.rows.slice(0, ROWS);
  document.getElementById('more').textContent = b.rows.length > ROWS ?
    `and ${b.rows.length - ROWS} more (the CSV export has everyone)` : '';
  for (const r of shown) {
    const tr = document.createElement('tr');
    tr.className = r.rank === null ? 'waiting' : (r.passed ? 'passed' : 'failed');
    cell(tr, 'rank', r.rank === null ? '' : r.rank);
    cell(tr, 'name', r.name);
    cell(tr, 'passed', r.rank === null ? 'working' : (r.passed ? 'yes' : 'no'));
    cell(tr, 'annotations', r.annotations === null ? '' : r.annotations);
    cell(tr, 'accuracy', pct(r.accuracy));
    cell(tr, 'live', r.live);
    cell(tr, 'verified', verdict(r));
    body.appendChild(tr);
  }
  scatter(b);
}
function scatter(b) {
  const svg = document.getElementById('scatter'), W = 420, H = 320, L = 50, B = 40, T = 24, R = 20;
  const pts = b.rows.filter(r => r.accuracy !== null);
  const xmax = Math.max(10, ...pts.map(r => r.annotations));
  const ymin = Math.min(0.5, ...pts.map(r => r.accuracy));
  const x = v => L + (W - L - R) * v / (1.05 * xmax), y = v => T + (H - T - B) * (1 - (v - ymin) / (1 - ymin));
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => { const e = document.createElementNS(ns, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; };
  svg.replaceChildren();
  svg.appendChild(el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#888'}));
  svg.appendChild(el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#888'}));
  svg.appendChild(el('line', {x1: L, y1: y(b.target), x2: W - R, y2: y(b.target), stroke: '#7fdc7f',
    'stroke-dasharray': '4 4'}));
  svg.appendChild(el('text', {x: W - R - 90, y: y(b.target) - 4}, `target ${pct(b.target)}`));
  svg.appendChild(el('text', {x: (W + L) / 2 - 40, y: H - 8}, 'annotations'));
  svg.appendChild(el('text', {x: 4, y: 12}, 'accuracy'));
  svg.appendChild(el('text', {x: L - 4, y: H - B + 14}, '0'));
  svg.appendChild(el('text', {x: W - R - 20, y: H - B + 14}, String(xmax)));
  svg.appendChild(el('text', {x: 4, y: H - B}, pct(ymin)));
  for (const r of pts) {
    const c = el('circle', {cx: x(r.annotations), cy: y(r.accuracy), r: 6,
      fill: r.passed ? '#7fdc7f' : '#e08080', class: 'point'});
    c.appendChild(el('title', {}, `${r.name}: ${pct(r.accuracy)} with ${r.annotations}`));
    svg.appendChild(c);
  }
}
function follow() {
  const source = new EventSource(`/api/events/${CODE}/stream${Q}`);
  source.onmessage = e => render(JSON.parse(e.data));
  source.onerror = () => {
    document.getElementById('count').textContent = 'reconnecting...';
    // a refused stream (429: too many open boards) is not retried by the browser: read the board JSON
    // meanwhile (limited per address too) and try the stream again in 10-15 s
    if (source.readyState === EventSource.CLOSED) {
      fetch(`/api/events/${CODE}/board${Q}`).then(r => r.ok ? r.json() : null).then(d => d && render(d)).catch(() => {});
      setTimeout(follow, 10000 + 5000 * Math.random());
    }
  };
}
follow();
"""


def board(code: str, assignment: str, track: str, roster: bool = False) -> str:
    """The projector page of one event."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Live board {html.escape(code)}</title><style>{_STYLE}</style></head>
<body data-code="{html.escape(code)}" data-roster="{int(roster)}">
<h1>{html.escape(assignment)} &middot; track {html.escape(track)}</h1>
<p class="muted">Join: <code id="join"></code> &middot; code <b>{html.escape(code)}</b> &middot;
<span id="count">connecting...</span></p>
<p class="rule" id="rule"></p>
<div class="banner" id="frozen"></div>
<div class="wrap">
<table id="board"><thead><tr><th>#</th><th class="name">name</th><th>passed</th><th>annotations</th>
<th>accuracy</th><th>live count</th><th>verified</th></tr></thead><tbody></tbody></table>
<svg id="scatter" width="420" height="320" role="img" aria-label="accuracy against annotations"></svg>
</div>
<p class="muted" id="more"></p>
<script>{_BOARD_JS}</script></body></html>"""


_ADMIN_JS = """
const params = new URLSearchParams(location.hash.slice(1));
const form = document.getElementById('login');
form.code.value = params.get('code') || ''; form.token.value = params.get('token') || '';
let CODE = '', TOKEN = '';
async function api(path, opts = {}) {
  const r = await fetch(`/api/admin/${CODE}${path}`, {...opts,
    headers: {'Authorization': `Bearer ${TOKEN}`, 'Content-Type': 'application/json'}});
  if (!r.ok) { const e = await r.json(); throw new Error(e.message); }
  return r;
}
function table(el, rows, cols) {
  el.replaceChildren();
  const head = document.createElement('tr');
  for (const c of cols) { const th = document.createElement('th'); th.textContent = c; head.appendChild(th); }
  el.appendChild(head);
  for (const r of rows) { const tr = document.createElement('tr');
    for (const c of cols) { const td = document.createElement('td');
      const v = r[c]; td.textContent = v === null || v === undefined ? '' : (c === 'accuracy' ?
        (100 * v).toFixed(2) + '%' : (typeof v === 'object' ? JSON.stringify(v) : v)); tr.appendChild(td); }
    el.appendChild(tr); }
}
async function load() {
  try {
    const d = await (await api('')).json();
    document.getElementById('status').textContent =
      `${d.assignment}, track ${d.track}: ${d.participants.length} participants` +
      (d.frozen ? ', board frozen' : '') + (d.closed ? ', closed' : '');
    const link = document.getElementById('boardlink'); link.href = d.board_link; link.textContent = d.board_link;
    for (const p of d.participants) {
      const v = p.verification;
      const again = v === null || v.accuracy === null ? 'no submission' :
        (100 * v.accuracy).toFixed(2) + '% with ' + v.annotations;
      const hidden = v === null || v.hidden_track === null ? '' : `; hidden track ${v.hidden_track}: ` +
        (v.hidden_accuracy === null ? 'no submission' : (100 * v.hidden_accuracy).toFixed(2) + '% with ' +
         v.hidden_annotations);
      p.verified = v === null ? '' : v.status + (v.status === 'differs' ? `: re-run ${again}; ${v.detail}` :
        (v.status === 'missing' ? ': ' + v.detail : (v.status === 'review' ? `: re-run ${again}${hidden}; ${v.detail}` :
         hidden)));
      p.notebook_uploaded = p.notebook === null ? '' : new Date(1000 * p.notebook.time).toLocaleTimeString();
      p.refused = Object.entries(p.refusals).map(([why, c]) => `${why} ${c.n}`).join(', ');
    }
    for (const f of d.failures) { f.when = new Date(1000 * f.time).toLocaleTimeString(); }
    table(document.getElementById('participants'), d.participants,
      ['rank', 'name', 'display_name', 'annotations', 'passed', 'accuracy', 'submitted_annotations', 'verified',
       'notebook_uploaded', 'refused', 'id']);
    document.getElementById('roster-part').style.display = d.roster ? 'block' : 'none';
    if (d.roster) { for (const r of d.roster) { r.joined = r.participant === null ? 'no' : 'yes'; }
      table(document.getElementById('roster'), d.roster, ['name', 'code', 'joined']); }
    table(document.getElementById('failures'), d.failures, ['when', 'name', 'op', 'status', 'error', 'reason',
      'message']);
    document.getElementById('error').textContent = '';
  } catch (e) { document.getElementById('error').textContent = e.message; }
}
async function ledger() {
  const pid = document.getElementById('pid').value;
  const d = await (await api(`/ledger/${pid}`)).json();
  table(document.getElementById('ledger'), d.entries,
    ['seq', 'time', 'op', 'ok', 'n_indices', 'n_new', 'count', 'split', 'accuracy', 'error', 'reason']);
}
form.onsubmit = e => { e.preventDefault(); CODE = form.code.value.trim(); TOKEN = form.token.value.trim();
  load(); };
document.getElementById('freeze').onclick = async () => { await api('/freeze', {method: 'POST',
  body: JSON.stringify({frozen: true})}); load(); };
document.getElementById('reveal').onclick = async () => { await api('/freeze', {method: 'POST',
  body: JSON.stringify({frozen: false})}); load(); };
document.getElementById('close').onclick = async () => {
  if (confirm('Close the event? No one can annotate or submit afterwards.')) {
    await api('/close', {method: 'POST'}); load(); } };
document.getElementById('showledger').onclick = ledger;
document.getElementById('invites').onclick = async () => {
  const blob = await (await api('/invites.csv')).blob();
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob);
  a.download = `invites-${CODE}.csv`; a.click(); };
document.getElementById('csv').onclick = async () => {
  const blob = await (await api('/results.csv')).blob();
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob);
  a.download = `event-${CODE}.csv`; a.click(); };
if (form.code.value && form.token.value) form.onsubmit(new Event('submit'));
"""


def admin() -> str:
    """The instructor's page; the token stays in the browser (fragment or form)."""
    style = _STYLE.replace("#111", "#fafafa").replace("#eee", "#111").replace("#222", "#eee")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Event admin</title>
<style>{style} table{{font-size:1rem}} td,th{{text-align:left;color:#111}}</style></head><body>
<h1>Event admin</h1>
<form id="login">code <input name="code" size="8"> admin token <input name="token" type="password" size="34">
<button>open</button></form>
<p id="status"></p><p id="error" style="color:#a00"></p>
<p>Board link for the projector (never refused): <a id="boardlink" target="_blank" rel="noopener"></a></p>
<p><button id="freeze">freeze board</button> <button id="reveal">reveal board</button>
<button id="csv">export CSV</button> <button id="close">close event</button></p>
<h2>Participants</h2><table id="participants"></table>
<div id="roster-part" style="display:none"><h2>Roster (invite-only: personal join codes)</h2>
<p><button id="invites">export codes (CSV)</button></p><table id="roster"></table></div>
<h2>Ledger</h2><p>participant id <input id="pid" size="5"> <button id="showledger">show</button></p>
<table id="ledger"></table>
<h2>Refused requests</h2><p>The latest; nothing was charged for any. Each participant's counts per reason are in
the column <i>refused</i> (a flood is counted, not logged one by one).</p><table id="failures"></table>
<script>{_ADMIN_JS}</script></body></html>"""


def message(text: str) -> str:
    return f"<!doctype html><html><body><p>{html.escape(text)}</p></body></html>"
