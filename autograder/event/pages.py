"""The board (projector) and the instructor's page: self-contained HTML, nothing loaded from the internet.

The board is made for a projector: the join address (``autograder serve --public-url``, else the
machine's LAN address) and the code are its largest text, with a QR code of the address drawn here
(segno, inline SVG: no script, nothing fetched); no horizontal scroll from 1024 px up, and at
1920x1080 the table and a scatter sized to its box fill the screen (`tests/test_board_projector.py`).
It shows display names only (pseudonyms), never a real name or a token, and each
entry's `autograder verify` result; it follows ``/api/events/{code}/stream`` (server-sent
events) and redraws the table and the accuracy-vs-annotations scatter without a reload. The admin page asks for the
event code and admin token (or reads them from the URL fragment, which never reaches
the server) and calls the ``/api/admin`` routes with the token as a Bearer header. It shows clock
times, readable headers, the pool indices of each request and the status and reason of every
refusal; columns sort on a click, a participant's name opens their ledger. Every participant string
reaches both pages as text (``textContent``), never as markup.
"""

from __future__ import annotations

import functools
import html

_STYLE = """
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:0;padding:1.5rem 2.5rem}
h1{font-size:2.4rem;margin:.2rem 0} .muted{color:#aaa} code{background:#222;padding:.1rem .4rem;border-radius:4px}
table{border-collapse:collapse;font-size:1.35rem;margin-top:.5rem} th,td{padding:.25rem .8rem;text-align:right;white-space:nowrap}
th{border-bottom:2px solid #555;color:#ccc} td.name,th.name{text-align:left}
"""

# The projector: one screen, no horizontal scroll from 1024 px up. The join instructions are the largest text
# (the address the room types, the code, a QR code of the address); at 1920x1080 the table and the scatter
# share the screen's height; below 1150 px they stack. Sizes follow the viewport (vw, vh), so the text at the
# back of the room grows with the projector.
_BOARD_STYLE = """
html,body{margin:0;height:100%} *{box-sizing:border-box}
body{font-family:system-ui,sans-serif;background:#111;color:#eee;padding:1.2vh 2vw;display:flex;flex-direction:column;
  min-height:100vh;overflow-x:hidden}
code{background:#222;padding:.1em .35em;border-radius:4px}
header{display:flex;gap:2vw;align-items:center;justify-content:space-between;flex-wrap:wrap}
.joinbox{flex:1 1 30rem;min-width:0}
.joinlead{font-size:clamp(28px,3.2vw,64px);font-weight:700;line-height:1.15;overflow-wrap:anywhere}
.joinlead .url{color:#ffd866} .joinlead .code{color:#7fd8ff;letter-spacing:.06em}
#join{display:inline-block;margin-top:.4em;font-size:clamp(16px,1.45vw,28px);color:#ddd;overflow-wrap:anywhere}
.qr{flex:none;background:#fff;padding:0;line-height:0;border-radius:6px}
.qr svg{width:clamp(150px,min(24vh,15vw),300px);height:auto;display:block}
h1{font-size:clamp(18px,1.5vw,30px);margin:.5em 0 0;font-weight:600;color:#ccc}
#count{color:#aaa}
p.rule{font-size:clamp(15px,1.15vw,24px);margin:.6em 0;color:#ccc}
.banner{background:#a33;color:#fff;padding:.4em 1em;font-size:clamp(18px,1.5vw,30px);display:none;margin:.3em 0}
main{flex:1 1 auto;display:grid;grid-template-columns:auto minmax(320px,1fr);gap:2vw;min-height:0}
.tablebox{min-width:0;overflow:hidden}
table{border-collapse:collapse;font-size:clamp(15px,min(1.3vw,2.3vh),30px)}
th,td{padding:.22em .6em;text-align:right;white-space:nowrap}
th{border-bottom:2px solid #555;color:#ccc} td.name,th.name{text-align:left}
td.verified,th.verified{text-align:left;white-space:normal;max-width:14em;font-size:.8em;color:#9cf}
tr.passed td.name{color:#7fdc7f} tr.waiting{color:#888}
.plot{min-width:0;min-height:clamp(300px,40vh,900px);display:flex}
#scatter{width:100%;height:100%;min-height:inherit;flex:1 1 auto;display:block}
#scatter text{fill:#ddd;font-size:clamp(15px,1.25vw,26px)} #scatter .tick{stroke:#333}
#more{color:#aaa;font-size:clamp(15px,1.1vw,22px);margin:.3em 0 0}
@media (max-width:1150px){main{display:block;flex:none} table{font-size:clamp(15px,2vw,24px)}
  .plot{height:60vh;margin-top:1vh}}
"""

_BOARD_JS = """
const CODE = document.body.dataset.code, ROWS = 18;  // at most, below the scatter's width
const URL0 = document.body.dataset.url || location.origin;  // the address `autograder serve` shows (--public-url)
// the instructor's board link carries ?key=: its stream is never refused (autograder.event.limits)
const KEY = new URLSearchParams(location.search).get('key'), Q = KEY ? `?key=${encodeURIComponent(KEY)}` : '';
document.getElementById('joinurl').textContent = URL0;
document.getElementById('join').textContent = document.body.dataset.roster === '1' ?
  `course.event.join("${URL0}", "<your personal code>")` :
  `course.event.join("${URL0}", "${CODE}", "your name")`;
const pct = a => a === null ? '' : (100 * a).toFixed(1) + '%';
let LAST = null;
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
  LAST = b;
  document.getElementById('rule').textContent = b.rule;
  document.getElementById('count').textContent =
    `${b.participants} joined, ${b.submitted} submitted`;
  const banner = document.getElementById('frozen');
  banner.style.display = b.frozen || b.closed ? 'block' : 'none';
  banner.textContent = b.closed ? 'The event is closed.' :
    'The board is frozen for the last minutes: results will be revealed at the end.';
  const body = document.querySelector('#board tbody');
  body.replaceChildren();
  for (const r of b.rows) {
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
  fit(b);
  scatter(b);
}
function fit(b) {  // beside the scatter: as many rows as the screen holds (at least 5), else ROWS; the rest are
  // counted below the table
  const box = document.querySelector('.tablebox'), rows = [...document.querySelectorAll('#board tbody tr')];
  const side = getComputedStyle(document.querySelector('main')).display === 'grid';
  const room = window.innerHeight - box.getBoundingClientRect().top - 48;
  let shown = rows.length;
  while (shown > ROWS) rows[--shown].remove();
  while (side && shown > 5 && document.getElementById('board').getBoundingClientRect().height > room) {
    rows[--shown].remove();
  }
  document.getElementById('more').textContent = b.rows.length > shown ?
    `and ${b.rows.length - shown} more (the CSV export has everyone)` : '';
}
function nice(max, n) {  // a tick step of 1, 2 or 5 x 10^k giving about n ticks up to max
  const raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
function scatter(b) {
  const svg = document.getElementById('scatter'), box = svg.getBoundingClientRect();
  const W = Math.max(300, box.width), H = Math.max(240, box.height);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const probe = parseFloat(getComputedStyle(document.querySelector('#more')).fontSize) || 16;
  const fs = Math.max(15, Math.min(26, W / 30, probe * 1.15)), L = 4.2 * fs, B = 3.2 * fs, T = 2.6 * fs, R = 1.2 * fs;
  const pts = b.rows.filter(r => r.accuracy !== null);
  const xstep = nice(Math.max(10, ...pts.map(r => r.annotations)), 5);
  const xmax = xstep * Math.ceil(Math.max(10, ...pts.map(r => r.annotations)) / xstep);
  const ymin = Math.min(0.5, Math.floor(10 * Math.min(1, ...pts.map(r => r.accuracy))) / 10);
  const x = v => L + (W - L - R) * v / xmax, y = v => T + (H - T - B) * (1 - (v - ymin) / (1 - ymin));
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => { const e = document.createElementNS(ns, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; };
  svg.replaceChildren();
  const ystep = (1 - ymin) > 0.5 ? 0.2 : 0.1;
  for (let v = 1; v >= ymin - 1e-9; v -= ystep) {  // y ticks: every 10 (or 20) points of accuracy
    svg.appendChild(el('line', {x1: L, y1: y(v), x2: W - R, y2: y(v), class: 'tick'}));
    svg.appendChild(el('text', {x: L - 0.4 * fs, y: y(v) + 0.35 * fs, 'text-anchor': 'end', class: 'ytick'},
      Math.round(100 * v) + '%'));
  }
  for (let v = 0; v <= xmax + 1e-9; v += xstep) {
    svg.appendChild(el('line', {x1: x(v), y1: T, x2: x(v), y2: H - B, class: 'tick'}));
    svg.appendChild(el('text', {x: x(v), y: H - B + 1.3 * fs, 'text-anchor': 'middle', class: 'xtick'}, String(v)));
  }
  svg.appendChild(el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#888'}));
  svg.appendChild(el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#888'}));
  svg.appendChild(el('line', {x1: L, y1: y(b.target), x2: W - R, y2: y(b.target), stroke: '#7fdc7f',
    'stroke-width': 2, 'stroke-dasharray': '8 6'}));
  svg.appendChild(el('text', {x: W - R, y: y(b.target) - 0.4 * fs, 'text-anchor': 'end', fill: '#7fdc7f'},
    `target ${pct(b.target)}`));
  svg.appendChild(el('text', {x: L + (W - L - R) / 2, y: H - 0.3 * fs, 'text-anchor': 'middle'}, 'annotations'));
  svg.appendChild(el('text', {x: 0.2 * fs, y: 1.1 * fs, 'text-anchor': 'start'}, 'accuracy'));
  for (const r of pts) {
    const c = el('circle', {cx: x(r.annotations), cy: y(r.accuracy), r: Math.max(6, 0.45 * fs),
      fill: r.passed ? '#7fdc7f' : '#e08080', stroke: '#111', class: 'point'});
    c.appendChild(el('title', {}, `${r.name}: ${pct(r.accuracy)} with ${r.annotations}`));
    svg.appendChild(c);
  }
}
window.addEventListener('resize', () => { if (LAST) render(LAST); });
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


@functools.lru_cache(maxsize=16)
def qr_svg(text: str) -> str:
    """A QR code of `text` as inline SVG (segno; no script, nothing fetched): black on white, a quiet zone of
    4 modules. Empty when segno is not installed (the join address is still written out in full)."""
    try:
        import segno
    except ImportError:
        return ""
    try:
        code = segno.make(text, error="m", micro=False)
    except Exception:  # too long for any QR code (an odd Host header): the address is still written out
        return ""
    return code.svg_inline(scale=10, border=4, dark="#000", light="#fff", omitsize=True)


def board(code: str, assignment: str, track: str, roster: bool = False, public_url: str | None = None) -> str:
    """The projector page of one event; `public_url` is the address participants join (in the QR code)."""
    url = public_url or ""
    qr = qr_svg(url) if url else ""
    lead = ('<span class="url" id="joinurl"></span> with your personal code' if roster else
            f'<span class="url" id="joinurl"></span> code <span class="code" id="joincode">{html.escape(code)}</span>')
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live board {html.escape(code)}</title><style>{_BOARD_STYLE}</style></head>
<body data-code="{html.escape(code)}" data-roster="{int(roster)}" data-url="{html.escape(url)}">
<header>
<div class="joinbox" id="joinbox"><div class="joinlead">Join {lead}</div><code id="join"></code>
<h1>{html.escape(assignment)} &middot; track {html.escape(track)} &middot; <span id="count">connecting...</span></h1>
</div>
<div class="qr" id="qr" role="img" aria-label="QR code of the join address">{qr}</div>
</header>
<p class="rule" id="rule"></p>
<div class="banner" id="frozen"></div>
<main>
<div class="tablebox"><table id="board"><thead><tr><th>#</th><th class="name">name</th><th>passed</th>
<th>annotations</th><th>accuracy</th><th>live count</th><th class="verified">verified</th></tr></thead><tbody></tbody>
</table><p id="more"></p></div>
<div class="plot"><svg id="scatter" role="img" aria-label="accuracy against annotations"></svg></div>
</main>
<script>{_BOARD_JS}</script></body></html>"""


_ADMIN_JS = """
const params = new URLSearchParams(location.hash.slice(1));
const form = document.getElementById('login');
form.code.value = params.get('code') || ''; form.token.value = params.get('token') || '';
let CODE = '', TOKEN = '', NAMES = {};
async function api(path, opts = {}) {
  const r = await fetch(`/api/admin/${CODE}${path}`, {...opts,
    headers: {'Authorization': `Bearer ${TOKEN}`, 'Content-Type': 'application/json'}});
  if (!r.ok) { const e = await r.json(); throw new Error(e.message); }
  return r;
}
const two = n => String(n).padStart(2, '0');
function when(t) {  // a Unix time as the instructor's clock reads it: 14:03:27 (the date too if not today)
  if (t === null || t === undefined) return '';
  const d = new Date(1000 * t), today = new Date();
  const clock = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return d.toDateString() === today.toDateString() ? clock :
    `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clock}`;
}
const pct = v => v === null || v === undefined ? '' : (100 * v).toFixed(2) + '%';
function indices(e) {  // the pool indices of an annotate request: those newly charged, else those asked for
  const shown = Array.isArray(e.new) && e.ok ? e.new : (Array.isArray(e.indices) ? e.indices : null);
  if (shown === null) return '';
  const total = e.ok && Array.isArray(e.new) ? e.n_new : e.n_indices;
  return shown.join(', ') + (total > shown.length ? ` ... (${total} in all)` : '');
}
let STATUSES = {};  // a refusal by the rules is logged without its HTTP status: the one the server answered
function readable(e) {  // every refusal shows an HTTP status and a reason (the rules' reason is the error kind)
  if (e.ok === false) {
    if (e.status === undefined || e.status === null) e.status = STATUSES[e.error] || 400;
    if (!e.reason) e.reason = e.error;
  }
  return e;
}
const SORTS = {};  // table id -> [column key, direction]
const LONG = ['message', 'verified', 'refused', 'indices'];  // columns whose text wraps
// cols: [key, header, how to show (optional)]; a column's value sorts numerically when it is a number
function table(el, rows, cols, link) {
  const [skey, sdir] = SORTS[el.id] || [null, 1];
  if (skey !== null) rows = [...rows].sort((a, b) => {
    const x = a[skey], y = b[skey];
    if (x === y) return 0; if (x === null || x === undefined || x === '') return 1;
    if (y === null || y === undefined || y === '') return -1;
    return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))) * sdir; });
  el.replaceChildren();
  const head = document.createElement('tr');
  for (const [key, label] of cols) {
    const th = document.createElement('th'), b = document.createElement('button');
    b.type = 'button'; b.className = 'sort'; b.textContent = label + (skey === key ? (sdir > 0 ? ' \\u25b2' : ' \\u25bc') : '');
    b.title = 'sort by ' + label;
    b.onclick = () => { SORTS[el.id] = [key, skey === key ? -sdir : 1]; table(el, rows, cols, link); };
    th.appendChild(b); head.appendChild(th); }
  el.appendChild(head);
  for (const r of rows) { const tr = document.createElement('tr');
    if (r.ok === false) tr.className = 'refused';
    for (const [key, label, show] of cols) { const td = document.createElement('td');
      const v = show ? show(r) : r[key];
      const text = v === null || v === undefined ? '' : (typeof v === 'object' ? JSON.stringify(v) : String(v));
      if (link && link[key] && r[link[key]] !== null && r[link[key]] !== undefined) {
        const a = document.createElement('a'); a.href = '#'; a.textContent = text;
        a.onclick = ev => { ev.preventDefault(); document.getElementById('pid').value = r[link[key]]; ledger(); };
        td.appendChild(a);
      } else td.textContent = text;
      if (LONG.includes(key)) td.className = 'long';
      tr.appendChild(td); }
    el.appendChild(tr); }
}
async function load() {
  try {
    const d = await (await api('')).json();
    document.getElementById('status').textContent =
      `${d.assignment}, track ${d.track}: ${d.participants.length} participants` +
      (d.frozen ? ', board frozen' : '') + (d.closed ? ', closed' : '') + ` (as of ${when(d.now)})`;
    const link = document.getElementById('boardlink'); link.href = d.board_link; link.textContent = d.board_link;
    NAMES = {}; STATUSES = d.refusal_status || {};
    d.failures.forEach(readable);
    for (const p of d.participants) {
      NAMES[p.id] = p.name;
      const v = p.verification;
      const again = v === null || v.accuracy === null ? 'no submission' :
        (100 * v.accuracy).toFixed(2) + '% with ' + v.annotations;
      const hidden = v === null || v.hidden_track === null ? '' : `; hidden track ${v.hidden_track}: ` +
        (v.hidden_accuracy === null ? 'no submission' : (100 * v.hidden_accuracy).toFixed(2) + '% with ' +
         v.hidden_annotations);
      p.verified = v === null ? '' : v.status + (v.status === 'differs' ? `: re-run ${again}; ${v.detail}` :
        (v.status === 'missing' ? ': ' + v.detail : (v.status === 'review' ? `: re-run ${again}${hidden}; ${v.detail}` :
         hidden)));
      p.notebook_time = p.notebook === null ? null : p.notebook.time;
      p.refused = Object.entries(p.refusals).map(([why, c]) => `${why} ${c.n}`).join(', ');
      p.passed_text = p.accuracy === null ? 'not yet' : (p.passed ? 'yes' : 'no');
    }
    table(document.getElementById('participants'), d.participants,
      [['rank', 'rank'], ['id', 'id'], ['name', 'name'], ['display_name', 'on the board'],
       ['annotations', 'annotations bought'], ['passed_text', 'passed'], ['accuracy', 'accuracy', r => pct(r.accuracy)],
       ['submitted_annotations', 'annotations at submission'], ['submitted', 'submitted at', r => when(r.submitted)],
       ['joined', 'joined at', r => when(r.joined)], ['verified', 'verified'],
       ['notebook_time', 'notebook uploaded', r => when(r.notebook_time)], ['refused', 'refused (per reason)']],
      {name: 'id', id: 'id'});
    document.getElementById('roster-part').style.display = d.roster ? 'block' : 'none';
    if (d.roster) { for (const r of d.roster) { r.joined = r.participant === null ? 'no' : 'yes'; }
      table(document.getElementById('roster'), d.roster,
        [['name', 'name'], ['code', 'personal code'], ['joined', 'joined'], ['participant', 'id']],
        {name: 'participant', participant: 'participant'}); }
    table(document.getElementById('failures'), d.failures,
      [['time', 'time', r => when(r.time)], ['name', 'participant'], ['op', 'request'],
       ['indices', 'pool indices', indices], ['status', 'HTTP status'], ['reason', 'reason'],
       ['message', 'message (what they were told)']], {name: 'participant'});
    document.getElementById('error').textContent = '';
  } catch (e) { document.getElementById('error').textContent = e.message; }
}
async function ledger() {
  const out = document.getElementById('ledger-error'), raw = document.getElementById('pid').value.trim();
  const pid = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isInteger(pid) || pid < 1) {
    out.textContent = 'the participant id is a whole number: the id column of the participants table';
    return; }
  try {
    const d = await (await api(`/ledger/${pid}`)).json();
    out.textContent = '';
    document.getElementById('ledger-who').textContent =
      `participant ${pid}` + (NAMES[pid] !== undefined ? `: ${NAMES[pid]}` : '') + `, ${d.entries.length} requests`;
    for (const e of d.entries) { readable(e); e.result = e.ok ? 'ok' : 'refused'; }
    table(document.getElementById('ledger'), d.entries,
      [['seq', '#'], ['time', 'time', r => when(r.time)], ['op', 'request'], ['result', 'result'],
       ['indices', 'pool indices', indices], ['n_new', 'newly charged'], ['count', 'annotations after'],
       ['split', 'split'], ['accuracy', 'accuracy', r => pct(r.accuracy)], ['status', 'HTTP status'],
       ['reason', 'reason'], ['message', 'message']]);
    document.getElementById('ledger').scrollIntoView({block: 'nearest'});
  } catch (e) { out.textContent = e.message; }
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
document.getElementById('reload').onclick = load;
document.getElementById('ledgerform').onsubmit = e => { e.preventDefault(); ledger(); };
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
<style>{style} table{{font-size:1rem}} td,th{{text-align:left;color:#111;vertical-align:top}}
td{{white-space:nowrap}} td.long{{white-space:normal;min-width:12em;max-width:36em}} tr:nth-child(even) td{{background:#f0f0f0}} tr.refused td{{color:#900}}
button.sort{{all:unset;cursor:pointer;font-weight:700}} button.sort:hover{{text-decoration:underline}}</style></head><body>
<h1>Event admin</h1>
<form id="login">code <input name="code" size="8"> admin token <input name="token" type="password" size="34">
<button>open</button></form>
<p id="status"></p><p id="error" style="color:#a00"></p>
<p>Board link for the projector (never refused): <a id="boardlink" target="_blank" rel="noopener"></a></p>
<p><button id="freeze">freeze board</button> <button id="reveal">reveal board</button>
<button id="csv">export CSV</button> <button id="reload">refresh</button> <button id="close">close event</button></p>
<h2>Participants</h2><p>Click a column's name to sort by it, a participant's name or id for their ledger.</p>
<table id="participants"></table>
<div id="roster-part" style="display:none"><h2>Roster (invite-only: personal join codes)</h2>
<p><button id="invites">export codes (CSV)</button></p><table id="roster"></table></div>
<h2>Ledger</h2><form id="ledgerform">participant id
<input id="pid" type="number" min="1" step="1" inputmode="numeric" required style="width:6em">
<button id="showledger">show</button> <span id="ledger-who"></span></form>
<p id="ledger-error" style="color:#a00"></p>
<table id="ledger"></table>
<h2>Refused requests</h2><p>The latest first; nothing was charged for any. Each participant's counts per reason are in
the column <i>refused (per reason)</i> (a flood is counted, not logged one by one).</p><table id="failures"></table>
<script>{_ADMIN_JS}</script></body></html>"""


def message(text: str) -> str:
    return f"<!doctype html><html><body><p>{html.escape(text)}</p></body></html>"
