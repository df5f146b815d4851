"""The static site of a Lens atlas: HTML pages, one stylesheet and a small script.

Everything is local (no CDN, no fetch): the class index is written into ``index.html`` as an
inline JSON block, so the pages work from the file system as well as from ``xjax lens serve``.
"""

import html
import json
import os

from xjax._internal.rundir import atomic_write

__all__ = ["write_class_page", "write_global_pages"]

CSS = """
:root { --fg: #1d232a; --muted: #5b6572; --bg: #f7f8fa; --card: #fff; --accent: #2457c5; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 12px 20px; background: var(--card); border-bottom: 1px solid #dde2e8;
         display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
header a { color: var(--accent); text-decoration: none; }
main { padding: 16px 20px; max-width: 1200px; margin: 0 auto; }
h1 { font-size: 1.4em; margin: 0.2em 0 0.6em; }
h2 { font-size: 1.15em; margin: 1.2em 0 0.5em; }
input[type=search] { width: 100%; max-width: 420px; padding: 8px 10px; font-size: 1em;
                     border: 1px solid #c3cad3; border-radius: 6px; }
ul.classes { list-style: none; padding: 0; display: grid; gap: 8px;
             grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); }
ul.classes li a { display: block; padding: 10px 12px; background: var(--card);
                  border: 1px solid #dde2e8; border-radius: 6px; color: var(--fg);
                  text-decoration: none; }
ul.classes li a:hover { border-color: var(--accent); }
.concept { background: var(--card); border: 1px solid #dde2e8; border-radius: 8px;
           padding: 12px; margin: 12px 0; }
.concept .row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.concept img { max-width: 100%; image-rendering: pixelated; border-radius: 4px; }
.concept .viz img { width: 160px; height: 160px; object-fit: cover; }
.concept .crops img { height: 96px; }
.bar { height: 8px; background: #e4e8ee; border-radius: 4px; overflow: hidden; width: 220px; }
.bar span { display: block; height: 100%; background: var(--accent); }
.muted { color: var(--muted); font-size: 0.9em; }
.examples img { width: 100%; max-width: 720px; }
nav.pager { display: flex; justify-content: space-between; margin: 16px 0; }
svg { background: var(--card); border: 1px solid #dde2e8; border-radius: 8px; width: 100%;
      height: auto; }
@media (max-width: 600px) {
  main { padding: 10px; }
  .concept .viz img { width: 120px; height: 120px; }
  .concept .crops img { height: 64px; }
}
"""

JS = """
(function () {
  var box = document.getElementById('search');
  if (!box) { return; }
  var items = Array.prototype.slice.call(document.querySelectorAll('ul.classes li'));
  box.addEventListener('input', function () {
    var q = box.value.trim().toLowerCase();
    items.forEach(function (li) {
      li.style.display = li.getAttribute('data-name').indexOf(q) >= 0 ? '' : 'none';
    });
  });
})();
"""


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


def write_class_page(out: str, info: dict, prev_next: tuple[str | None, str | None]) -> None:
    """``classes/<slug>/index.html`` from the class's ``class.json`` record."""
    e = html.escape
    rows = []
    for c in info["concepts"]:
        share = max(0.0, min(1.0, c["importance"]))
        rel = "n/a" if c["reliability"] is None else f"{c['reliability']:.2f}"
        viz = (f'<div class="viz"><img src="{e(c["viz"])}" alt="feature visualization of concept '
               f'{c["id"]}"></div>' if c.get("viz") else "")
        rows.append(f"""<section class="concept" id="concept-{c['id']}">
<h2>Concept {c['id']}</h2>
<div class="bar" title="importance {c['importance']:.3f}"><span style="width:{100 * share:.1f}%">
</span></div>
<p class="muted">importance (share of the logit) {c['importance']:.3f} · prevalence
{c['prevalence']:.2f} · reliability {rel}</p>
<div class="row">{viz}<div class="crops"><img src="{e(c['crops'])}"
alt="top crops of concept {c['id']}"></div></div></section>""")
    examples = "".join(f'<img src="{e(p)}" alt="attribution maps">' for p in info["examples"])
    prev, nxt = prev_next
    pager = ('<nav class="pager">'
             + (f'<a id="prev" href="../{e(prev)}/index.html">previous class</a>' if prev else
                "<span></span>")
             + (f'<a id="next" href="../{e(nxt)}/index.html">next class</a>' if nxt else
                "<span></span>") + "</nav>")
    body = f"""<h1 id="class-name">{e(info['name'])}</h1>
<p class="muted">{info['images']} images predicted as this class · {len(info['concepts'])}
concepts (CRAFT, NMF on {info['crops']} crops) · accuracy on them {info['accuracy']:.2f}</p>
{pager}
<h2>Concepts, by importance</h2>
{''.join(rows)}
<h2>Examples</h2>
<p class="muted">Each row: the image, {e(info['method'])}, then the concept attribution maps of
its three most important concepts (Grad-CAM through the NMF encoder's implicit derivative).</p>
<div class="examples">{examples}</div>
{pager}"""
    _write_text(os.path.join(out, "classes", info["slug"], "index.html"),
                  _page(info["name"], body, 2))


def write_global_pages(out: str, classes: list[dict], embedding: list[dict], meta: dict) -> None:
    """``index.html`` (searchable class list), ``map.html`` (2-D map of all concept vectors)
    and the assets."""
    e = html.escape
    os.makedirs(os.path.join(out, "assets"), exist_ok=True)
    _write_text(os.path.join(out, "assets", "lens.css"), CSS)
    _write_text(os.path.join(out, "assets", "lens.js"), JS)
    items = "".join(f'<li data-name="{e(c["name"].lower())}"><a href="classes/{e(c["slug"])}/'
                    f'index.html">{e(c["name"])}</a></li>' for c in classes)
    body = f"""<h1>{e(meta['title'])}</h1>
<p class="muted">{len(classes)} classes · model {e(meta['model'])} · dataset
{e(meta['dataset'])}</p>
<p><input id="search" type="search" placeholder="Search a class" aria-label="search classes"></p>
<ul class="classes">{items}</ul>
<script type="application/json" id="lens-index">{json.dumps(classes)}</script>"""
    _write_text(os.path.join(out, "index.html"), _page(meta["title"], body, 0))
    palette = ["#2457c5", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#e07a5f",
               "#3d405b", "#81b29a", "#f2cc8f"]
    slugs = [c["slug"] for c in classes]
    dots = []
    for p in embedding:
        color = palette[slugs.index(p["slug"]) % len(palette)] if p["slug"] in slugs else "#999"
        dots.append(f'<a href="classes/{e(p["slug"])}/index.html#concept-{p["concept"]}">'
                    f'<circle cx="{20 + 560 * p["x"]:.1f}" cy="{20 + 360 * p["y"]:.1f}" '
                    f'r="{4 + 8 * max(0.0, min(1.0, p["importance"])):.1f}" fill="{color}" '
                    f'fill-opacity="0.75"><title>{e(p["name"])}: concept {p["concept"]}'
                    f'</title></circle></a>')
    legend = " ".join(f'<span style="color:{palette[i % len(palette)]}">&#9679;</span> '
                      f'{e(c["name"])}' for i, c in enumerate(classes))
    body = f"""<h1>Concept map</h1>
<p class="muted">Every concept of every class, placed by the first two principal components of
the unit-normalized concept vectors (dot size: importance). Click a dot to open its concept.</p>
<svg viewBox="0 0 600 400" role="img" aria-label="concept map">{''.join(dots)}</svg>
<p class="muted">{legend}</p>"""
    _write_text(os.path.join(out, "map.html"), _page("Concept map", body, 0))
