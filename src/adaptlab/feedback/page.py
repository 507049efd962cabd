"""The feedback page's HTML: plain markup and a little JavaScript, no build step.

Keys: 1 = A better, 2 = B better, 3 = tie, 4 = both bad, Enter = submit (not while typing a comment).
A vote is retried until the server acknowledges it; the server stores each (pair, annotator) once.
"""

from __future__ import annotations

import html
import json

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline}
.prompt{background:#f4f4f6;padding:.8em 1em;border-radius:6px;white-space:pre-wrap}
.answers{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:1em 0}
.answer{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;white-space:pre-wrap;min-height:6em}
.answer h3{margin:0 0 .4em}
.choices button{font-size:15px;padding:.5em 1em;margin-right:.4em;border:1px solid #888;border-radius:5px;background:#fff}
.choices button.on{background:#2d6cdf;color:#fff;border-color:#2d6cdf}
#submit{font-size:15px;padding:.5em 1.4em}
.status{color:#666;margin-left:1em}
textarea{width:100%;height:3.5em;font:inherit;box-sizing:border-box}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em;font-size:12px}
"""

VOTE_SCRIPT = """
const cfg = JSON.parse(document.getElementById('cfg').textContent);
let pair = null, choice = null, busy = false;
window.acked = [];
const $ = id => document.getElementById(id);
function show(p) {
  $('progress').textContent = `${p.progress.voted} voted · ${p.progress.ready} of ${p.progress.total} pairs ready`;
  pair = p.pair; choice = null; $('comment').value = ''; $('rating_a').value = ''; $('rating_b').value = '';
  document.querySelectorAll('.choices button').forEach(b => b.classList.remove('on'));
  $('main').hidden = !pair; $('waiting').hidden = !!pair;
  if (!pair) { $('waiting').textContent = p.done ? 'All pairs voted: thank you.' : 'Generating answers…';
               if (!p.done) setTimeout(next, 1000); return; }
  $('prompt').textContent = pair.prompt; $('answer_a').textContent = pair.a; $('answer_b').textContent = pair.b;
  $('main').dataset.pair = pair.id;
}
async function next() {
  try { const r = await fetch('/api/next?annotator=' + encodeURIComponent(cfg.annotator)); show(await r.json()); }
  catch (e) { $('status').textContent = 'reconnecting…'; setTimeout(next, 500); }
}
function pick(c) {
  choice = c;
  document.querySelectorAll('.choices button').forEach(b => b.classList.toggle('on', b.dataset.choice === c));
}
function rating(id) { const v = $(id).value; return v === '' ? null : Number(v); }
async function submit() {
  if (!pair || !choice || busy) return;
  busy = true;
  const body = JSON.stringify({pair_id: pair.id, annotator: cfg.annotator, choice: choice,
    rating_a: rating('rating_a'), rating_b: rating('rating_b'), comment: $('comment').value});
  for (;;) {
    try {
      const r = await fetch('/api/vote', {method: 'POST', body: body,
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': cfg.csrf}});
      if (r.ok) { const v = await r.json(); window.acked.push({pair_id: pair.id, choice: choice, vote_id: v.vote_id});
                  $('status').textContent = 'saved'; pair = null; break; }
      $('status').textContent = 'refused: ' + (await r.text()); busy = false; return;
    } catch (e) { $('status').textContent = 'server unreachable, retrying…';
                  await new Promise(res => setTimeout(res, 500)); }
  }
  busy = false; await next();
}
document.querySelectorAll('.choices button').forEach(b => b.addEventListener('click', () => pick(b.dataset.choice)));
$('submit').addEventListener('click', submit);
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'TEXTAREA' || e.target.tagName === 'SELECT') return;
  const c = {'1': 'A', '2': 'B', '3': 'tie', '4': 'both_bad'}[e.key];
  if (c) { pick(c); e.preventDefault(); }
  else if (e.key === 'Enter') { submit(); e.preventDefault(); }
});
next();
"""

LOGIN_SCRIPT = """
document.getElementById('login').addEventListener('submit', async e => {
  e.preventDefault();
  const r = await fetch('/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({key: document.getElementById('key').value})});
  if (r.ok) location.href = '/'; else document.getElementById('status').textContent = 'wrong key';
});
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{script}</script></body></html>")


def _rating(name: str) -> str:
    options = "".join(f"<option>{i}</option>" for i in range(1, 8))
    return f"<label>rating (1-7, optional) <select id={name}><option value=''>–</option>{options}</select></label>"


def vote_page(annotator: str, csrf: str, total: int) -> str:
    """The voting page for one annotator; pairs come from /api/next, votes go to /api/vote."""
    cfg = json.dumps({"annotator": annotator, "csrf": csrf, "total": total}).replace("</", "<\\/")
    buttons = "".join(f"<button type=button data-choice={c}><kbd>{k}</kbd> {label}</button>"
                      for k, c, label in [(1, "A", "A is better"), (2, "B", "B is better"), (3, "tie", "Tie"),
                                          (4, "both_bad", "Both bad")])
    body = f"""<header><h1>Which answer is better?</h1>
<div>annotator <b>{html.escape(annotator)}</b> · <span id=progress></span></div></header>
<p id=waiting hidden></p>
<section id=main hidden>
<div class=prompt id=prompt></div>
<div class=answers>
 <div class=answer><h3>A</h3><div id=answer_a></div>{_rating("rating_a")}</div>
 <div class=answer><h3>B</h3><div id=answer_b></div>{_rating("rating_b")}</div>
</div>
<div class=choices>{buttons}</div>
<p><textarea id=comment maxlength=2000 placeholder="comment (optional)"></textarea></p>
<button id=submit type=button>Submit <kbd>Enter</kbd></button><span class=status id=status></span>
</section>
<script type=application/json id=cfg>{cfg}</script>"""
    return _page("adaptlab feedback", body, VOTE_SCRIPT)


def entry_page(message: str = "") -> str:
    """Ask for an annotator id (a plain GET form)."""
    note = f"<p style='color:#b00'>{html.escape(message)}</p>" if message else ""
    body = f"""<h1>adaptlab feedback</h1>{note}
<form method=get action="/"><label>annotator id <input name=annotator required maxlength=64
 pattern="[A-Za-z0-9_.@-]+" autofocus></label> <button>Start</button></form>"""
    return _page("adaptlab feedback", body)


def login_page() -> str:
    """Ask for the API key the server was started with (sent as JSON, kept in an HttpOnly cookie)."""
    body = """<h1>adaptlab feedback</h1><form id=login><label>API key <input id=key type=password autofocus></label>
<button>Enter</button> <span id=status></span></form>"""
    return _page("adaptlab feedback: key", body, LOGIN_SCRIPT)
