"""The static site of a Lens atlas: HTML pages, one stylesheet and a small script.

Everything is local (no CDN, no fetch): the class index is written into ``index.html`` as an
inline JSON block, so the pages work from the file system as well as from ``xjax lens serve``.
It stays fast at 1000 classes x 10 concepts: one page per class, thumbnails and crops load
lazily (``loading="lazy"``), the index filters an in-page list (no re-rendering), and the
concept map draws its points on a canvas-free SVG without per-point links.

Keyboard: ``/`` focuses the search box and Enter opens the first match; on a class page the
left and right arrows go to the previous and next class.
"""

import html
import json
import os

from xjax._internal.rundir import atomic_write

__all__ = ["write_class_page", "write_global_pages"]

CSS = """
:root { --fg: #1d232a; --muted: #5b6572; --bg: #f7f8fa; --card: #fff; --accent: #2457c5;
        --line: #dde2e8; --warn: #9a5b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line);
         display: flex; flex-wrap: wrap; gap: 16px; align-items: center; }
header a, main a { color: var(--accent); text-decoration: none; }
a:focus-visible, input:focus-visible, summary:focus-visible { outline: 3px solid #f2b33d;
                                                              outline-offset: 2px; }
main { padding: 16px 20px; max-width: 1200px; margin: 0 auto; }
h1 { font-size: 1.4em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.15em; margin: 1.2em 0 0.5em; }
h3 { font-size: 1.02em; margin: 0 0 0.3em; }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
input[type=search] { width: 100%; max-width: 420px; padding: 8px 10px; font-size: 1em;
                     border: 1px solid #c3cad3; border-radius: 6px; }
ul.classes { list-style: none; padding: 0; margin: 0; display: grid; gap: 10px;
             grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); }
ul.classes li a { display: flex; gap: 10px; align-items: center; padding: 8px;
                  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
                  color: var(--fg); }
ul.classes li a:hover { border-color: var(--accent); }
ul.classes img { width: 56px; height: 56px; object-fit: cover; border-radius: 4px;
                 image-rendering: pixelated; background: #e4e8ee; flex: none; }
ul.classes .n { display: block; font-weight: 600; }
.group { margin: 14px 0; }
.group > h2 { font-size: 1em; color: var(--muted); }
.concept { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
           padding: 12px; margin: 12px 0; }
.concept .row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.concept figure { margin: 0; }
.concept figcaption { font-size: 0.85em; color: var(--muted); }
.concept img { max-width: 100%; image-rendering: pixelated; border-radius: 4px; }
.concept .viz img { width: 160px; height: 160px; object-fit: cover; }
.concept .crops img, .concept .maps img { height: 96px; }
.flag { color: var(--warn); font-size: 0.9em; }
.bar { height: 8px; background: #e4e8ee; border-radius: 4px; overflow: hidden; width: 220px; }
.bar span { display: block; height: 100%; background: var(--accent); }
.muted { color: var(--muted); font-size: 0.9em; }
.examples img { width: 100%; max-width: 720px; }
nav.pager { display: flex; justify-content: space-between; margin: 16px 0; }
details.folded { margin: 16px 0; }
details.folded summary { cursor: pointer; color: var(--muted); }
figure.map { margin: 0; }
svg { background: var(--card); border: 1px solid var(--line); border-radius: 8px; width: 100%;
      height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: var(--muted); }
svg circle { cursor: pointer; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
ul.legend span.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 6px;
                        margin-right: 6px; vertical-align: -1px; }
@media (max-width: 600px) {
  main { padding: 10px; }
  .concept .viz img { width: 120px; height: 120px; }
  .concept .crops img, .concept .maps img { height: 64px; }
}
"""

JS = """
(function () {
  var box = document.getElementById('search');
  if (box) {
    var items = Array.prototype.slice.call(document.querySelectorAll('ul.classes li'));
    var groups = Array.prototype.slice.call(document.querySelectorAll('.group'));
    var count = document.getElementById('count');
    var filter = function () {
      var q = box.value.trim().toLowerCase(), shown = 0;
      items.forEach(function (li) {
        var hit = li.getAttribute('data-search').indexOf(q) >= 0;
        li.hidden = !hit;
        if (hit) { shown += 1; }
      });
      groups.forEach(function (g) {
        g.hidden = !g.querySelector('li:not([hidden])');
      });
      if (count) { count.textContent = shown + ' of ' + items.length + ' classes'; }
    };
    box.addEventListener('input', filter);
    box.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter') {
        var first = document.querySelector('ul.classes li:not([hidden]) a');
        if (first) { window.location.href = first.getAttribute('href'); }
      }
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === '/' && document.activeElement !== box) { ev.preventDefault(); box.focus(); }
    });
    var group = document.getElementById('grouped');
    if (group) {
      group.addEventListener('change', function () {
        document.getElementById('by-group').hidden = !group.checked;
        document.getElementById('by-name').hidden = group.checked;
      });
    }
    if (box.value) { filter(); }
  }
  document.addEventListener('keydown', function (ev) {
    var tag = (document.activeElement || {}).tagName;
    if (tag === 'INPUT' || ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
    var link = document.getElementById(ev.key === 'ArrowLeft' ? 'prev'
                                       : ev.key === 'ArrowRight' ? 'next' : '');
    if (link) { window.location.href = link.getAttribute('href'); }
  });
  var map = document.getElementById('concept-map');
  if (map) {
    map.addEventListener('click', function (ev) {
      var href = ev.target.getAttribute && ev.target.getAttribute('data-href');
      if (href) { window.location.href = href; }
    });
  }
})();
"""

# Distinguishable colours (Okabe-Ito, then Tableau 10): the map colours classes (up to 17) or,
# beyond, groups of classes.
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
           "#000000", "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
           "#b07aa1", "#ff9da7", "#9c755f"]


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{up}assets/lens.css"></head>
<body><header><a href="{up}index.html"><strong>xjax Lens</strong></a>
<a href="{up}map.html">concept map</a></header>
<main>{body}</main>
<script src="{up}assets/lens.js"></script></body></html>
"""


def _write_text(path: str, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _concept_card(c: dict, cls: str, related: list[dict]) -> str:
    e = html.escape
    share = max(0.0, min(1.0, c["importance"]))
    rel = "n/a (too few images)" if c["reliability"] is None else f"{c['reliability']:.2f}"
    title = f"Concept {c.get('rank', c['id'])} of {cls}"
    figs = []
    if c.get("viz"):
        figs.append(f'<figure class="viz"><img src="{e(c["viz"])}" loading="lazy" width="160" '
                    f'height="160" alt="feature visualization of {e(title)}"><figcaption>MACO '
                    f'visualization</figcaption></figure>')
    figs.append(f'<figure class="crops"><img src="{e(c["crops"])}" loading="lazy" '
                f'alt="top crops of {e(title)}"><figcaption>crops where it is strongest'
                f'</figcaption></figure>')
    if c.get("maps"):
        figs.append(f'<figure class="maps"><img src="{e(c["maps"])}" loading="lazy" '
                    f'alt="attribution maps of {e(title)} on example images"><figcaption>where '
                    f'it is on example images (concept attribution maps)</figcaption></figure>')
    near = ""
    if related:
        links = ", ".join(f'<a href="../{e(r["slug"])}/index.html#concept-{r["concept"]}">'
                          f'{e(r["name"])} (concept {r.get("rank", r["concept"])}, cosine '
                          f'{r["similarity"]:.2f})</a>' for r in related)
        near = f'<p class="muted related">Also close to concepts of: {links}</p>'
    flags = "".join(f'<p class="flag">{e(f)}</p>' for f in c.get("flags", []))
    return f"""<section class="concept" id="concept-{c['id']}">
<h3>{e(title)}</h3>
<div class="bar" title="importance {c['importance']:.3f}"><span style="width:{100 * share:.1f}%">
</span></div>
<p class="muted">importance (share of the logit) {c['importance']:.3f} · prevalence
{c['prevalence']:.2f} · reliability {rel}</p>{flags}
<div class="row">{''.join(figs)}</div>{near}</section>"""


def write_class_page(out: str, info: dict, prev_next: tuple[str | None, str | None], *,
                     related: dict | None = None) -> None:
    """``classes/<slug>/index.html`` from the class's ``class.json`` record: concepts ranked by
    importance (flagged ones folded away), each with its visualization, crops, attribution maps
    on example images and its nearest concepts of other classes."""
    e = html.escape
    related = related or {}
    cards = {c["id"]: _concept_card(c, info["name"], related.get((info["slug"], c["id"]), []))
             for c in info["concepts"]}
    shown = [c for c in info["concepts"] if not c.get("flags")]
    folded = [c for c in info["concepts"] if c.get("flags")]
    fold = ""
    if folded:
        fold = (f'<details class="folded"><summary>{len(folded)} concept(s) folded away '
                f'(non-positive importance or near-constant crops)</summary>'
                + "".join(cards[c["id"]] for c in folded) + "</details>")
    examples = "".join(f'<img src="{e(p)}" loading="lazy" alt="attribution maps">'
                       for p in info["examples"])
    prev, nxt = prev_next
    pager = ('<nav class="pager">'
             + (f'<a id="prev" href="../{e(prev)}/index.html">&larr; previous class</a>' if prev
                else "<span></span>")
             + (f'<a id="next" href="../{e(nxt)}/index.html">next class &rarr;</a>' if nxt else
                "<span></span>") + "</nav>")
    wnid = f" · WordNet ID {e(info['wnid'])}" if info.get("wnid") else ""
    body = f"""<h1 id="class-name">{e(info['name'])}</h1>
<p class="muted">{info['images']} images predicted as this class{wnid} · {len(shown)} concepts
shown (CRAFT, NMF on {info['crops']} crops) · accuracy on them {info['accuracy']:.2f}</p>
{pager}
<h2>Concepts, by importance</h2>
{''.join(cards[c['id']] for c in shown)}
{fold}
<h2>Examples</h2>
<p class="muted">Each row: the image, {e(info['method'])}, then the concept attribution maps of
its three most important concepts (Grad-CAM through the NMF encoder's implicit derivative).</p>
<div class="examples">{examples}</div>
{pager}"""
    _write_text(os.path.join(out, "classes", info["slug"], "index.html"),
                _page(info["name"], body, 2))


def _class_item(c: dict) -> str:
    e = html.escape
    search = " ".join([c["name"], *(c.get("aliases") or []), c.get("wnid") or ""]).lower()
    thumb = (f'<img src="classes/{e(c["slug"])}/{e(c["thumb"])}" loading="lazy" width="56" '
             f'height="56" alt="">' if c.get("thumb") else "")
    folded = f", {c['folded']} folded" if c.get("folded") else ""
    wnid = f" · {e(c['wnid'])}" if c.get("wnid") else ""
    return (f'<li data-search="{e(search)}"><a href="classes/{e(c["slug"])}/index.html">{thumb}'
            f'<span><span class="n">{e(c["name"])}</span><span class="muted">{c["images"]} '
            f'images · {c["concepts"]} concepts{folded}{wnid}</span></span></a></li>')


def write_global_pages(out: str, classes: list[dict], embedding: dict, meta: dict, *,
                       groups: list[dict] | None = None) -> None:
    """``index.html`` (searchable class list with thumbnails, by name or grouped by shared
    concepts), ``map.html`` (2-D map of all concept vectors, labelled axes and legend) and
    the assets."""
    e = html.escape
    os.makedirs(os.path.join(out, "assets"), exist_ok=True)
    _write_text(os.path.join(out, "assets", "lens.css"), CSS)
    _write_text(os.path.join(out, "assets", "lens.js"), JS)
    by_slug = {c["slug"]: c for c in classes}
    items = "".join(_class_item(c) for c in sorted(classes, key=lambda c: c["name"].lower()))
    grouped = ""
    if groups and len(groups) > 1:
        grouped = "".join(f'<section class="group"><h2>{e(g["label"])} ({len(g["slugs"])})</h2>'
                          f'<ul class="classes">'
                          + "".join(_class_item(by_slug[s]) for s in g["slugs"] if s in by_slug)
                          + "</ul></section>" for g in groups)
    toggle = ('<label><input type="checkbox" id="grouped"> group by shared concepts</label>'
              if grouped else "")
    hint = ("Search a class by name or WordNet ID" if any(c.get("wnid") for c in classes)
            else "Search a class by name")
    body = f"""<h1>{e(meta['title'])}</h1>
<p class="muted">{len(classes)} classes · model {e(meta['model'])} · dataset
{e(meta['dataset'])} · <a href="map.html">concept map</a></p>
<div class="controls"><input id="search" type="search" placeholder="{e(hint)} (press /)"
aria-label="search classes">{toggle}
<span id="count" class="muted" aria-live="polite">{len(classes)} classes</span></div>
<div id="by-name"><ul class="classes">{items}</ul></div>
<div id="by-group" hidden>{grouped}</div>
<script type="application/json" id="lens-index">{json.dumps(classes)}</script>"""
    _write_text(os.path.join(out, "index.html"), _page(meta["title"], body, 0))
    _write_text(os.path.join(out, "map.html"),
                _page("Concept map", _map_body(classes, embedding, groups or []), 0))


def _map_body(classes: list[dict], embedding: dict, groups: list[dict]) -> str:
    e = html.escape
    points, var = embedding.get("points", []), embedding.get("variance", [0.0, 0.0])
    by_class = len(classes) <= len(PALETTE)
    if by_class:
        keys = {c["slug"]: i for i, c in enumerate(classes)}
        legend = [(c["name"], PALETTE[i]) for i, c in enumerate(classes)]
    else:                              # colour by group of classes, the rest in grey
        keys = {s: i for i, g in enumerate(groups[:len(PALETTE) - 1]) for s in g["slugs"]}
        legend = [(g["label"], PALETTE[i]) for i, g in enumerate(groups[:len(PALETTE) - 1])]
        if len(groups) >= len(PALETTE):
            legend.append(("other groups", "#9aa3ad"))
    x0, y0, w, h = 60, 20, 620, 380
    dots = []
    for p in points:
        i = keys.get(p["slug"])
        color = PALETTE[i] if i is not None else "#9aa3ad"
        r = 3 + 7 * max(0.0, min(1.0, p["importance"]))
        dots.append(f'<circle cx="{x0 + w * p["x"]:.1f}" cy="{y0 + h * (1 - p["y"]):.1f}" '
                    f'r="{r:.1f}" fill="{color}" fill-opacity="{0.3 if p.get("folded") else 0.8}"'
                    f' stroke="#fff" stroke-width="0.5" data-href="classes/{e(p["slug"])}/'
                    f'index.html#concept-{p["concept"]}"><title>{e(p["name"])}: concept '
                    f'{p.get("rank") or p["concept"]} (importance {p["importance"]:.2f})</title>'
                    f'</circle>')
    axes = (f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#c3cad3"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" stroke="#c3cad3"/>'
            f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle">principal component '
            f'1 ({100 * var[0]:.0f}% of the variance)</text>'
            f'<text transform="translate({x0 - 28} {y0 + h / 2}) rotate(-90)" '
            f'text-anchor="middle">principal component 2 ({100 * var[1]:.0f}% of the variance)'
            f'</text>')
    items = "".join(f'<li><span class="swatch" style="background:{col}"></span>{e(name)}</li>'
                    for name, col in legend)
    what = "class" if by_class else "group of classes (by shared concepts)"
    return f"""<h1>Concept map</h1>
<p class="muted">Every concept of every class, placed by the first two principal components of
the unit-normalized concept vectors; colour: {what}; dot size: importance; faded: folded
concepts. Click a dot to open its concept.</p>
<figure class="map"><svg id="concept-map" viewBox="0 0 700 450" role="img"
aria-label="concept map">{axes}{''.join(dots)}</svg>
<figcaption><ul class="legend" aria-label="legend">{items}</ul></figcaption></figure>"""
