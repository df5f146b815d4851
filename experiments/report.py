"""Write ``experiments/README.md`` from its template and the committed results files.

    python experiments/report.py            # rewrite experiments/README.md
    python experiments/report.py --check    # exit 1 when README.md differs from what it would be

Every number of the page comes from a results JSON (``experiments/results/*.json``, each row
with the command, commit, machine and date that produced it) or from ``experiments/papers.json``
(each paper number with its source). ``experiments/README.in.md`` holds the prose and
placeholders:

- ``{{table:NAME}}``: a table built by ``TABLES[NAME]`` from the results;
- ``{{v:FILE#key#key:FORMAT}}``: one value of ``results/FILE.json`` (keys walk ``rows`` or
  ``meta``: ``{{v:utility_full#meta#accuracy_vs_label:.1%}}``);
- ``{{p:ID#key#key:FORMAT}}``: one value of ``papers.json``;
- ``{{d:NAME:FORMAT}}``: a value derived from several results by ``DERIVED[NAME]``.

Outside placeholders and code spans the template holds no decimal number (``tests/experiments/
test_report.py`` checks it), so a number cannot be typed in by hand.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
TEMPLATE = os.path.join(HERE, "README.in.md")
README = os.path.join(HERE, "README.md")
PLACEHOLDER = re.compile(r"\{\{(table|v|p|d):([^}]*)\}\}")

_cache: dict[str, dict] = {}


def load(name: str) -> dict:
    """``results/<name>.json`` (or ``papers.json`` for ``"papers"``), read once."""
    if name not in _cache:
        path = os.path.join(HERE, "papers.json") if name == "papers" else \
            os.path.join(RESULTS, f"{name}.json")
        if not os.path.exists(path):
            raise KeyError(f"report: no results file {path}")
        with open(path) as f:
            _cache[name] = json.load(f)
    return _cache[name]


def rows(name: str) -> dict:
    return load(name)["rows"]


def walk(tree, keys, where):
    for k in keys:
        if not isinstance(tree, dict) or k not in tree:
            raise KeyError(f"report: {where}: no key {k!r}")
        tree = tree[k]
    return tree


def fmt(value, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and np.isnan(value):
        return "NaN"
    return format(value, spec) if spec else str(value)


def table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def bold_best(values, lower_is_better):
    """Indices of the best value of a column (ties included)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return set()
    best = min(finite) if lower_is_better else max(finite)
    return {i for i, v in enumerate(values) if v == best}


def metric_table(entries, columns, *, first="method"):
    """``entries``: ``[(label, row)]``; ``columns``: ``[(title, key, format, lower_is_better or
    None)]``; the best value of each scored column is bold."""
    body = [[label] for label, _ in entries]
    for _title, key, spec, lower in columns:
        values = [row.get(key) for _, row in entries]
        best = bold_best(values, lower) if lower is not None else set()
        for i, v in enumerate(values):
            cell = fmt(v, spec)
            body[i].append(f"**{cell}**" if i in best else cell)
    return table([first] + [c[0] for c in columns], body)


# --------------------------------------------------------------------------------------- EVA
EVA_NETS = {"mlp": "2 x 100 ReLU MLP", "small_cnn": "small_cnn",
            "lipschitz_cnn": "1-Lipschitz CNN"}
EVA_METHODS = {"eva": "EVA (CROWN-IBP)", "eva_ibp": "EVA (IBP)", "saliency": "saliency",
               "gradient_input": "gradient x input", "smoothgrad": "SmoothGrad",
               "vargrad": "VarGrad", "integrated_gradients": "integrated gradients",
               "grad_cam": "Grad-CAM", "grad_cam_pp": "Grad-CAM++",
               "occlusion": "occlusion", "rise": "RISE", "sobol": "Sobol",
               "greedy_as": "Greedy-AS"}
SCORES = [("Deletion ↓", "deletion", ".3f", True), ("Insertion ↑", "insertion", ".3f", False),
          ("MuFidelity ↑", "mu_fidelity", ".3f", False),
          ("Robustness-S_r ↓", "robustness_sr", ".3f", True)]


def eva_net(net):
    r = rows("eva_table_full")
    entries = [(label, r[f"{net}/{m}"]) for m, label in EVA_METHODS.items() if f"{net}/{m}" in r]
    return metric_table(entries, SCORES + [("s / image", "seconds_per_image", ".4f", None),
                                           ("compile s", "compile_seconds", ".1f", None)])


def eva_bounds():
    r = rows("eva_table_full")
    body = []
    for net, label in EVA_NETS.items():
        b = r.get(f"{net}/bounds")
        if b:
            body.append([label, fmt(b["accuracy"], ".1%"), fmt(b["epsilon"], "g"),
                         fmt(b["certified"], ".0%"), fmt(b["median_width"], ".3g")])
    return table(["network", "test accuracy", "EVA's epsilon", "balls certified",
                  "median margin-bound width"], body)


def eva_sweep():
    r = rows("eva_table_full")
    nets = [n for n in EVA_NETS if f"{n}/bounds" in r]
    eps = list(r[f"{nets[0]}/bounds"]["sweep"])
    body = [[e] + [f"{fmt(r[f'{n}/bounds']['sweep'][e]['certified'], '.0%')} / "
                   f"{fmt(r[f'{n}/bounds']['sweep'][e]['median_width'], '.3g')}" for n in nets]
            for e in eps]
    return table(["epsilon"] + [f"{EVA_NETS[n]}: certified / median width" for n in nets], body)


def eva_paper():
    paper = load("papers")["eva_mnist"]
    entries = list(paper["rows"].items())
    return metric_table(entries, SCORES + [("s / image", "seconds", "g", None)]) + \
        f"\n\nSource: {paper['source']}."


# ------------------------------------------------------------------------------------- Sobol
SOBOL_METHODS = ("sobol", "hsic", "rise", "occlusion")
BUDGETS_SHOWN = (264, 528, 1056)
FIDELITY = [("Deletion ↓", "deletion", ".3f", True), ("Insertion ↑", "insertion", ".3f", False),
            ("MuFidelity ↑", "mu_fidelity", ".3f", False)]
TIMES = [("s / image", "seconds_per_image", ".4f", None),
         ("model-call limit s", "model_call_limit_seconds", ".4f", None),
         ("overhead", "overhead", ".2f", None), ("compile s", "compile_seconds", ".1f", None)]


def with_limit(r):
    """Rows with the model-call limit and overhead recomputed from the file's ``forward`` row (the
    model alone, measured once), so that every row uses the same measurement."""
    forward = r["forward"]["seconds_per_image"]
    return {k: v if k == "forward" else
            {**v, "model_call_limit_seconds": v["forward_passes"] * forward,
             "overhead": v["seconds_per_image"] / (v["forward_passes"] * forward)}
            for k, v in r.items()}


def sobol_budget(name="sobol_fidelity_fmnist_full"):
    r = with_limit(rows(name))
    entries = sorted(((k.split("/")[0], v) for k, v in r.items()
                      if k.split("/")[0] in SOBOL_METHODS),
                     key=lambda e: (SOBOL_METHODS.index(e[0]), e[1]["forward_passes"]))
    return metric_table(entries, [("forward passes", "forward_passes", "d", None)] + FIDELITY
                        + TIMES)


def sobol_ablation(name="sobol_fidelity_fmnist_full"):
    r = rows(name)
    ref = [(f"Sobol design, Jansen, inpainting (reference, {v['forward_passes']} passes)", v)
           for k, v in r.items() if k == f"sobol/{r_budget(r)}"]
    entries = ref + [(k.split("/", 1)[1], v) for k, v in r.items() if k.startswith("ablation/")]
    return metric_table(entries, FIDELITY + TIMES[:1], first="variant")


def r_budget(r):
    return next(v["forward_passes"] for k, v in r.items() if k.startswith("ablation/"))


def sobol_defaults_h200():
    r = rows("sobol_fidelity_defaults_h200")
    cols = [("Deletion (logit) ↓", "deletion_logit", ".3f", True),
            ("Insertion (logit) ↑", "insertion_logit", ".3f", False),
            ("Deletion (prob) ↓", "deletion_prob", ".4f", True),
            ("Insertion (prob) ↑", "insertion_prob", ".4f", False),
            ("first call s / image (compile included)", "seconds_per_image", ".2f", None),
            ("settings", "settings", "", None)]
    return metric_table(list(r.items()), cols)


# ------------------------------------------------------------------------------ MeGe, utility
def mege():
    r = rows("mege_reco_full")
    cols = [("MeGe ↑", "mege", ".3f", False), ("ReCo ↑", "reco", ".3f", False),
            ("same-prediction pairs", "pairs_same", "d", None),
            ("one-correct pairs", "pairs_diff", "d", None),
            ("distances dropped", "pairs_dropped", "d", None),
            ("seconds", "seconds", ".1f", None), ("settings", "settings", "", None)]
    return metric_table([(k, v) for k, v in r.items() if "/" not in k], cols)


def mege_random():
    r = rows("mege_reco_full")
    body = [[m, f"{r[m]['mege']:.3f}", f"{v['mege']:.3f}", f"{r[m]['reco']:.3f}",
             f"{v['reco']:.3f}", f"{r[m]['held_out_accuracy']:.3f}",
             f"{v['held_out_accuracy']:.3f}"]
            for k, v in r.items() if k.startswith("random_labels/")
            for m in [k.split("/", 1)[1]]]
    return table(["method", "MeGe, true labels", "MeGe, permuted labels", "ReCo, true labels",
                  "ReCo, permuted labels", "held-out accuracy, true", "held-out accuracy, permuted"],
                 body)


def _random_label_drops(key):
    r = rows("mege_reco_full")
    pairs = [(r[k.split("/", 1)[1]][key], v[key]) for k, v in r.items()
             if k.startswith("random_labels/")]
    return sum(b < a for a, b in pairs), len(pairs)


UTILITY = {"baseline": "baseline", "control": "control (random maps)", "saliency": "saliency",
           "gradient_input": "gradient x input",
           "integrated_gradients": "integrated gradients", "smoothgrad": "SmoothGrad",
           "grad_cam": "Grad-CAM", "occlusion": "occlusion", "rise": "RISE", "sobol": "Sobol"}


def utility():
    r = rows("utility_full")
    paper = load("papers")["utility_husky"]["rows"]
    best = {m: max(v["utility"] for k, v in r.items() if k.startswith(m + "/")
                   and not k.endswith("/baseline")) for m in ("similarity", "cnn")}
    body = []
    for c, label in UTILITY.items():
        row = [label]
        for m in ("similarity", "cnn"):
            v = r[f"{m}/{c}"]
            u = fmt(v["utility"], ".3f")
            u = f"**{u}**" if v["utility"] == best[m] and c != "baseline" else u
            ci = "" if c == "baseline" else f" [{v['low']:.3f}, {v['high']:.3f}]"
            row += [u + ci, v["session_accuracy"]]
        row.append(fmt(paper.get(c), ".2f") if c in paper else
                   ("-" if c == "baseline" else "not in the paper"))
        body.append(row)
    return table(["condition", "similarity: utility [95% CI]", "sessions (%)",
                  "CNN: utility [95% CI]", "sessions (%)", "paper, Husky vs Wolf"], body)


# ---------------------------------------------------------------------------------- Lipschitz
def lipschitz_robustness():
    r = rows("lipschitz_full")
    keys = ["clean_accuracy"] + [f"{k}@{e}" for k in ("certified", "pgd")
                                 for e in ("0.1", "0.5", "1.0")]
    body = [[label] + [fmt(r[f"{m}/robustness"][k], ".1%") for k in keys]
            for m, label in (("small_cnn", "small_cnn"), ("lipschitz_cnn", "LipschitzCNN"))]
    return table(["model", "clean", "certified @0.1", "@0.5", "@1.0", "PGD @0.1", "@0.5",
                  "@1.0"], body)


def lipschitz_saliency():
    r = rows("lipschitz_full")
    paper = load("papers")["otnn_fmnist"]["rows"]
    entries = [("small_cnn", r["small_cnn/saliency"]),
               ("LipschitzCNN", r["lipschitz_cnn/saliency"])]
    t = metric_table(entries, [("stability ↓", "stability_1-spearman", ".3f", True),
                               ("MuFidelity ↑", "mu_fidelity", ".3f", False)], first="model")
    lines = t.split("\n")
    lines[0] += " paper (not verified) |"
    lines[1] += "---|"
    lines[2] += (f" unconstrained: MuFidelity {paper['unconstrained']['mu_fidelity_zero']:.3f},"
                 f" stability {paper['unconstrained']['stability']:.2f} |")
    lines[3] += (f" OTNN: MuFidelity {paper['otnn']['mu_fidelity_zero']:.3f}, stability "
                 f"{paper['otnn']['stability']:.2f} |")
    return "\n".join(lines) + f"\n\nPaper column: {load('papers')['otnn_fmnist']['source']}."


LIPSCHITZ_MEGE = {"small_cnn": "small_cnn, 5 epochs", "lipschitz_cnn": "LipschitzCNN, 5 epochs",
                  "small_cnn_matched": "small_cnn at matched accuracy"}


def lipschitz_mege():
    r = rows("lipschitz_full")
    body = []
    for m, label in LIPSCHITZ_MEGE.items():
        if f"{m}/mege:saliency" not in r:
            continue
        cells = [f"{r[f'{m}/mege:{e}']['mege']:.3f} / {r[f'{m}/mege:{e}']['reco']:.3f}"
                 for e in ("saliency", "smoothgrad", "integrated_gradients")]
        epochs = r[f"{m}/mege:saliency"].get("epochs")
        label += f" ({epochs} epoch{'s' if epochs != 1 else ''})" if epochs else ""
        body.append([label, fmt(r[f"{m}/mege:saliency"]["held_out_accuracy"], ".3f")] + cells)
    return table(["model", "held-out accuracy (mean of folds)", "saliency MeGe / ReCo",
                  "SmoothGrad MeGe / ReCo", "IG MeGe / ReCo"], body)


def _lipschitz_mege_wins(other, key):
    """Explainers for which the Lipschitz folds' ``key`` beats ``other``'s."""
    r = rows("lipschitz_full")
    return sum(r[f"lipschitz_cnn/mege:{e}"][key] > r[f"{other}/mege:{e}"][key]
               for e in ("saliency", "smoothgrad", "integrated_gradients"))


# ------------------------------------------------------------------------------ Harmonization
HARMONIZATION = {"lambda=0": "plain (lambda 0)", "lambda=1": "reference, lambda 1",
                 "lambda=10": "reference, lambda 10", "abs lambda=1": "absolute, lambda 1",
                 "abs lambda=10": "absolute, lambda 10",
                 "no decoy": "no decoy (plain, clean training images)"}
HARM_COLS = [("accuracy", "accuracy", False), ("decoy agreement", "decoy_agreement", True),
             ("alignment (Spearman / ceiling)", "alignment_spearman", False),
             ("Dice", "alignment_dice", False)]


def harmonization_stats(prefix):
    r = rows("harmonization_full")
    out = {}
    for cond in HARMONIZATION:
        seeds = [v for k, v in r.items() if k.startswith(prefix + cond + "/seed=")]
        if seeds:
            out[cond] = {c: (float(np.mean([s[c] for s in seeds])),
                             float(np.std([s[c] for s in seeds])), len(seeds))
                         for _, c, _ in HARM_COLS}
    return out


def harmonization(task):
    stats = harmonization_stats("swatch/" if task == "swatch" else "")
    scored = [c for c in stats if c != "no decoy"]
    body = [[HARMONIZATION[c]] for c in stats]
    for _, key, lower in HARM_COLS:
        best = bold_best([stats[c][key][0] for c in scored], lower)
        for i, c in enumerate(stats):
            m, s, _ = stats[c][key]
            cell = f"{m:.3f}"
            body[i].append((f"**{cell}**" if c in scored and scored.index(c) in best else cell)
                           + f" ± {s:.3f}")
    return table(["loss"] + [t for t, _, _ in HARM_COLS], body)


# -------------------------------------------------------------------------------------- CRAFT
def craft_classes():
    r = rows("craft_full")
    body = []
    for k, v in r.items():
        if not k.startswith("fmnist/"):
            continue
        top = ", ".join(f"{c} ({v['prevalence'][c]:.2f})" for c in v["top_concepts"])
        body.append([v["class"], v["images"], v["crops"], f"{v['crop_relative_l2']:.3f}",
                     " / ".join(f"{v[f'c_deletion_{m}']:.2f}" for m in ("sobol", "gi", "random")),
                     " / ".join(f"{v[f'c_insertion_{m}']:.2f}" for m in ("sobol", "gi",
                                                                        "random")),
                     " / ".join(f"{v[f'c_mufidelity_{m}']:.2f}" for m in ("sobol", "gi")),
                     top, f"{v['fit_seconds']:.1f}", f"{v['sobol_seconds_per_image']:.3f}"])
    return table(["class", "images", "crops", "crop rel. l2",
                  "C-Del Sobol / GI / random ↓", "C-Ins Sobol / GI / random ↑",
                  "C-muFid Sobol / GI", "top concepts (prevalence)", "fit s", "Sobol s/img"],
                 body)


CRAFT_EXTRACTORS = ("nmf", "pca", "ica", "kmeans", "sparse_coding", "topk_sae")
CRAFT_COLS = ("relative_l2", "r2", "sparsity", "stability", "fid", "ood", "c_deletion",
              "c_insertion", "c_mufidelity", "seconds")


def craft_holistic():
    r = rows("craft_full")
    hol = [v for k, v in r.items() if k.startswith("holistic/")]
    body = [[m] + [f"{np.mean([h[m][c] for h in hol]):.3f}" for c in CRAFT_COLS]
            for m in CRAFT_EXTRACTORS]
    return table(["method"] + list(CRAFT_COLS), body)


def craft_lite0():
    v = rows("craft_full")["lite0/photos"]
    body = [[c, ", ".join(p)] for c, p in v["concept_sources"].items()]
    return table(["concept", "photos of its top crops"], body)


# ------------------------------------------------------------------------------------ FeatViz
def featviz_classes():
    r = rows("featviz_full")
    body = [[v["method"], v["class"], f"{v['lite0_logit']:.2f}", f"{v['lite0_prob']:.3f}",
             f"{v['lite1_prob']:.3f} ({int(v['lite1_top1'])})",
             f"{v['lite2_prob']:.3f} ({int(v['lite2_top1'])})"] for v in r.values()]
    return table(["method", "class", "Lite0 logit", "Lite0 prob", "Lite1 prob (top-1)",
                  "Lite2 prob (top-1)"], body)


def featviz_summary():
    body = []
    for m in ("maco", "fourier"):
        s = featviz_means(m)
        body.append([m, f"{s['lite0_logit']:.2f}", f"{s['lite0_prob']:.3f}",
                     f"{s['lite1_prob']:.3f}", f"{s['lite1_top1']:.2f}", f"{s['lite2_prob']:.3f}",
                     f"{s['lite2_top1']:.2f}",
                     " / ".join(f"{s[f'lite{i}_crop_prob']:.3f}" for i in range(3)),
                     f"{s['seconds_per_image']:.1f} ({s['device']})"])
    return table(["method", "mean Lite0 logit", "mean Lite0 prob", "mean Lite1 prob",
                  "Lite1 top-1", "mean Lite2 prob", "Lite2 top-1",
                  "crop view: Lite0 / Lite1 / Lite2 prob", "s/image (device)"], body)


def featviz_means(method):
    vs = [v for v in rows("featviz_full").values() if v["method"] == method]
    out = {k: float(np.mean([v[k] for v in vs])) for k, x in vs[0].items()
           if isinstance(x, (int, float))}
    out["device"] = vs[0]["device"]
    return out


# ------------------------------------------------------------------------------------- FRSign
def frsign():
    r = rows("frsign_synthetic")
    body = []
    for name in ("saliency", "sobol", "rise", "craft_codes", "craft_importance"):
        v = r[name]
        box = (f"{v['mass_in_box']:.2f} ({v['box_area_share']:.2f})" if "mass_in_box" in v
               else "")
        body.append([name, v["kind"], f"{v['predictability']:.3f} ({v['majority']:.2f})",
                     f"{v['alike_pair_predictability']:.3f} ({v['alike_pair_majority']:.2f})",
                     f"{v['same_state_cosine']:.4f}", f"{v['other_state_cosine']:.4f}",
                     f"{v['state_gap']:.4f}", box, f"{v['seconds_per_image'] * 1e3:.1f}"])
    pair = " vs ".join(r["sobol"]["alike_pair"])
    return table(["explanation", "kind", "predictability (majority)",
                  f"{pair} predictability (majority)", "same-state cosine", "other-state cosine",
                  "gap", "mass in box (area share)", "ms/crop"], body)


# --------------------------------------------------------------------------------- provenance
def provenance_table():
    body = []
    for f in sorted(os.listdir(RESULTS)):
        if not f.endswith(".json") or "_quick" in f:
            continue
        meta = load(f[:-5])["meta"]
        runs = {json.dumps(p, sort_keys=True) for p in meta.get("provenance", {}).values()}
        for p in sorted(runs):
            p = json.loads(p)
            n = sum(json.dumps(q, sort_keys=True) == json.dumps(p, sort_keys=True)
                    for q in meta["provenance"].values())
            body.append([f"`{f}`", n, f"`{p['command']}`", f"`{p['commit']}`", p["machine"],
                         p["date"], p.get("note", "")])
    return table(["file", "rows", "command", "commit", "machine", "date (UTC)", "note"], body)


TABLES = {"eva_mlp": lambda: eva_net("mlp"), "eva_small_cnn": lambda: eva_net("small_cnn"),
          "eva_lipschitz_cnn": lambda: eva_net("lipschitz_cnn"), "eva_bounds": eva_bounds,
          "eva_sweep": eva_sweep, "eva_paper": eva_paper,
          "sobol_budget": sobol_budget, "sobol_ablation": sobol_ablation,
          "sobol_defaults_h200": sobol_defaults_h200, "mege": mege, "mege_random": mege_random,
          "utility": utility,
          "lipschitz_robustness": lipschitz_robustness, "lipschitz_saliency": lipschitz_saliency,
          "lipschitz_mege": lipschitz_mege,
          "harmonization_swatch": lambda: harmonization("swatch"),
          "harmonization_corner": lambda: harmonization("corner"),
          "craft_classes": craft_classes, "craft_holistic": craft_holistic,
          "craft_lite0": craft_lite0, "featviz_classes": featviz_classes,
          "featviz_summary": featviz_summary, "frsign": frsign,
          "provenance": provenance_table}


# ----------------------------------------------------------------------------------- derived
def _craft(metric, better):
    """Classes where GI's concept ordering beats Sobol's on ``metric``."""
    r = [v for k, v in rows("craft_full").items() if k.startswith("fmnist/")]
    return sum(better(v[f"{metric}_gi"], v[f"{metric}_sobol"]) for v in r)


def _best(name, net, key, lower):
    r = {k.split("/")[1]: v for k, v in rows(name).items()
         if k.startswith(net + "/") and not k.endswith("/bounds")}
    pick = min if lower else max
    return EVA_METHODS.get(pick(r, key=lambda m: r[m][key]), pick(r, key=lambda m: r[m][key]))


def _rank(net, method, key, lower):
    r = {k.split("/")[1]: v[key] for k, v in rows("eva_table_full").items()
         if k.startswith(net + "/") and not k.endswith("/bounds")}
    order = sorted(r, key=lambda m: r[m] if lower else -r[m])
    return order.index(method) + 1


def _speedup(net):
    r = rows("eva_table_full")
    return r[f"{net}/greedy_as"]["seconds_per_image"] / r[f"{net}/eva"]["seconds_per_image"]


def _sobol_at(method, budget, key):
    return with_limit(rows("sobol_fidelity_fmnist_full"))[f"{method}/{budget}"][key]


def _budget_wins(key, lower):
    """Budgets at which Sobol's ``key`` is the best of the three budgeted methods."""
    r = rows("sobol_fidelity_fmnist_full")
    budgets = sorted({v["forward_passes"] for k, v in r.items() if k.startswith("sobol/")})
    wins = 0
    for b in budgets:
        vals = {m: r[f"{m}/{b}"][key] for m in ("sobol", "hsic", "rise")}
        best = min(vals.values()) if lower else max(vals.values())
        wins += vals["sobol"] == best
    return wins


DERIVED = {
    "craft_gi_del_wins": lambda: _craft("c_deletion", lambda g, s: g <= s),
    "craft_gi_ins_wins": lambda: _craft("c_insertion", lambda g, s: g >= s),
    "craft_classes": lambda: sum(k.startswith("fmnist/") for k in rows("craft_full")),
    "eva_paper_speedup": lambda: (load("papers")["eva_mnist"]["rows"]["GreedyAS"]["seconds"]
                                  / load("papers")["eva_mnist"]["rows"]["EVA"]["seconds"]),
    "sobol_ins_wins": lambda: _budget_wins("insertion", False),
    "sobol_del_wins": lambda: _budget_wins("deletion", True),
    "sobol_mufid_wins": lambda: _budget_wins("mu_fidelity", False),
    "sobol_ablation_passes": lambda: r_budget(rows("sobol_fidelity_fmnist_full")),
    "sobol_budgets": lambda: sum(k.startswith("sobol/") for k in
                                 rows("sobol_fidelity_fmnist_full")),
    "utility_grad_cam_rank_similarity": lambda: _utility_rank("similarity", "grad_cam"),
    "utility_grad_cam_rank_cnn": lambda: _utility_rank("cnn", "grad_cam"),
    "utility_methods": lambda: len(UTILITY) - 2,
}
for _net in EVA_NETS:
    for _m in ("eva", "greedy_as"):
        for _key, _lower in (("deletion", True), ("insertion", False), ("mu_fidelity", False),
                             ("robustness_sr", True)):
            DERIVED[f"rank_{_net}_{_m}_{_key}"] = (
                lambda n=_net, m=_m, k=_key, lo=_lower: _rank(n, m, k, lo))
    if _net != "lipschitz_cnn":
        DERIVED[f"speedup_{_net}"] = lambda n=_net: _speedup(n)
    DERIVED[f"methods_{_net}"] = lambda n=_net: sum(
        k.startswith(n + "/") and not k.endswith("/bounds") for k in rows("eva_table_full"))
for _m in SOBOL_METHODS[:3]:
    for _b in BUDGETS_SHOWN:
        for _key in ("deletion", "insertion", "mu_fidelity", "overhead"):
            DERIVED[f"{_m}_{_b}_{_key}"] = lambda m=_m, b=_b, k=_key: _sobol_at(m, b, k)


REFERENCE = {"sampler": "sobol", "estimator": "jansen", "perturbation": "inpainting"}


def _ablation_best(arg, key, lower):
    """The best choice of ``arg`` (the reference included) on ``key`` at the ablation budget."""
    r = rows("sobol_fidelity_fmnist_full")
    ref = r[f"sobol/{r_budget(r)}"]
    cands = {REFERENCE[arg]: ref[key]}
    cands.update({k.split("=", 1)[1]: v[key] for k, v in r.items()
                  if k.startswith(f"ablation/{arg}=")})
    pick = min if lower else max
    return pick(cands, key=cands.get)


def _harm(prefix, cond, key="accuracy"):
    return harmonization_stats(prefix)[cond][key][0]


for _arg in ("sampler", "estimator", "perturbation"):
    for _key, _lower in (("deletion", True), ("insertion", False), ("mu_fidelity", False)):
        DERIVED[f"ablation_best_{_arg}_{_key}"] = (
            lambda a=_arg, k=_key, lo=_lower: _ablation_best(a, k, lo))
DERIVED.update({
    "frsign_max_map_gap": lambda: max(rows("frsign_synthetic")[m]["state_gap"]
                                      for m in ("saliency", "sobol", "rise")),
    "lip_mege_wins_matched": lambda: _lipschitz_mege_wins("small_cnn_matched", "mege"),
    "lip_reco_wins_matched": lambda: _lipschitz_mege_wins("small_cnn_matched", "reco"),
    "mege_random_lower": lambda: _random_label_drops("mege")[0],
    "reco_random_lower": lambda: _random_label_drops("reco")[0],
    "mege_random_methods": lambda: _random_label_drops("mege")[1],
    "harm_swatch_plain_accuracy": lambda: _harm("swatch/", "lambda=0"),
    "harm_swatch_abs1_accuracy": lambda: _harm("swatch/", "abs lambda=1"),
    "harm_swatch_nodecoy_accuracy": lambda: _harm("swatch/", "no decoy"),
    "sobol_budget_summary": lambda: (
        f"Sobol best of Sobol / HSIC / RISE at {_budget_wins('insertion', False)} of "
        f"{DERIVED['sobol_budgets']()} budgets on Insertion, {_budget_wins('deletion', True)} on "
        f"Deletion, {_budget_wins('mu_fidelity', False)} on MuFidelity"),
})
for _m in ("maco", "fourier"):
    for _k in ("lite0_prob", "lite0_crop_prob"):
        DERIVED[f"featviz_{_m}_{_k}"] = lambda m=_m, k=_k: featviz_means(m)[k]


def _utility_rank(meta, method):
    r = {k.split("/")[1]: v["utility"] for k, v in rows("utility_full").items()
         if k.startswith(meta + "/") and not k.endswith(("/baseline", "/control"))}
    return sorted(r, key=lambda m: -r[m]).index(method) + 1


def replace(match) -> str:
    kind, body = match.group(1), match.group(2)
    if kind == "table":
        if body not in TABLES:
            raise KeyError(f"report: unknown table {body!r}; tables: {sorted(TABLES)}")
        return TABLES[body]()
    ref, _, spec = body.partition(":")
    if kind == "d":
        if ref not in DERIVED:
            raise KeyError(f"report: unknown derived value {ref!r}")
        return fmt(DERIVED[ref](), spec)
    name, *keys = ref.split("#")
    source = load("papers")[name] if kind == "p" else load(name)
    return fmt(walk(source, keys, body), spec)


def render(template: str) -> str:
    header = ("<!-- Generated by `python experiments/report.py` from experiments/README.in.md "
              "and experiments/results/*.json: edit those, not this file. -->\n")
    return header + PLACEHOLDER.sub(replace, template)


def bare_numbers(template: str) -> list[str]:
    """Decimal numbers and percentages written by hand: outside placeholders, code spans and
    fenced blocks."""
    text = re.sub(r"```.*?```", "", template, flags=re.S)
    text = PLACEHOLDER.sub("", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\([^()]*\.(png|json|md)\)", "", text)          # image and file links
    return re.findall(r"(?<![\w.])\d+\.\d+|\d+(?:\.\d+)?\s?%", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README.md is not what the results give")
    args = parser.parse_args(argv)
    with open(TEMPLATE) as f:
        template = f.read()
    bare = bare_numbers(template)
    if bare:
        sys.exit(f"report: numbers typed into {TEMPLATE} (use a placeholder): {bare[:20]}")
    text = render(template)
    if args.check:
        with open(README) as f:
            if f.read() != text:
                sys.exit("report: experiments/README.md differs from the results; run "
                         "python experiments/report.py")
        return 0
    with open(README, "w") as f:
        f.write(text)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    main()
