"""The report files beside the model: `dataset_report.json` (the dataset check), `report.json`
(the result analysis with the summary) and `report.html`, one self-contained page for people
(inline CSS, the plots and the thumbnails of the worst confusions embedded as base64 PNG; no
script, nothing fetched)."""

from __future__ import annotations

import base64
import copy
import html
import json
from pathlib import Path
from typing import Any

NAMES = ("dataset_report.json", "report.json", "report.html")

CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:62rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border:1px solid #dde;
text-align:right}th{background:#f3f5fa}td:first-child,th:first-child{text-align:left}
.summary{background:#f3f7ff;border-left:4px solid #4a74d9;padding:.8rem 1rem}
.warn{background:#fff6e5;border-left:4px solid #e39b1b;padding:.4rem .8rem;margin:.3rem 0}
.ok{color:#1f7a3a}.figs img{max-width:48%;margin-right:1%}
.thumbs figure{display:inline-block;margin:.3rem;text-align:center;font-size:12px}
.thumbs img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccd}
code{font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _png(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _dataset_section(d: dict[str, Any], names: list[str]) -> str:
    c = d["counts"]
    out = ["<h2 id='dataset'>Dataset check</h2>"]
    if d["warnings"]:
        out += [f"<div class='warn'>⚠️ {_e(w['text'])}</div>" for w in d["warnings"]]
    else:
        out.append("<p class='ok'>No problems found.</p>")
    out.append(f"<p>Validation: {_e(d['splits']['val']['how'])}. Test: "
               f"{_e(d['splits']['test']['how'])}.</p>")
    rows = [[n] + [c[s]["per_class"].get(n, 0) for s in ("train", "val", "test")] for n in names]
    rows.append(["all"] + [c[s]["images"] for s in ("train", "val", "test")])
    out.append(_table(["class", "train", "val", "test"], rows))
    b = d["balance"]
    out.append(f"<p>Imbalance (largest ÷ smallest training class): {_e(b['imbalance'])} "
               f"(warning above {_e(b['warn_above'])}).</p>")
    dup = d["duplicates"]
    leak = dup["test_leak"]
    out.append(f"<h3>Duplicates</h3><p>{dup['exact']['pairs']} exact and "
               f"{dup['near']['pairs']} near-duplicate pairs; {leak['images']} of {leak['of']} "
               f"test images ({leak['share']:.0%}) copy a training or validation image. "
               f"Method: {_e(dup['method']['exact'])}; {_e(dup['method']['near'])}.</p>")
    pairs = [[p["a"], p["a_split"], p["b"], p["b_split"], kind]
             for kind in ("exact", "near") for p in dup[kind]["listed"]]
    out.append(_table(["image", "split", "copy", "split", "kind"], pairs[:60]))
    files = d["files"]
    sus = [[k.replace("_", " "), v["count"], ", ".join(v["listed"][:8])]
           for k, v in files["suspicious"].items() if v["count"]]
    out.append("<h3>Suspicious and unreadable files</h3>")
    if files["unreadable"]["count"]:
        sus.append(["unreadable (skipped)", files["unreadable"]["count"],
                    "; ".join(files["unreadable"]["listed"][:8])])
    out.append(_table(["kind", "images", "examples"], sus))
    sizes = files["sizes"]
    if sizes["shorter_side"]:
        s = sizes["shorter_side"]
        out.append(f"<p>Shorter side: {s['min']}–{s['max']} px (median {s['median']}); "
                   f"{sizes['distinct_sizes']} distinct sizes. Modes: "
                   f"{_e(', '.join(f'{k} {v}' for k, v in files['modes'].items()))}. Formats: "
                   f"{_e(', '.join(f'{k} {v}' for k, v in files['formats'].items()))}.</p>")
    return "\n".join(out)


def _result_section(r: dict[str, Any], plots: dict[str, Path]) -> str:
    where = "test" if r["result_split"] == "test" else "validation"
    out = [f"<h2 id='results'>Results on the {where} split</h2>"]
    out.append(f"<p>Accuracy {r['accuracy']:.3f}; chance {r['chance']:.3f}.</p>"
               if r.get("accuracy") is not None else "")
    rows = [[n, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}",
             v.get("support", "")] for n, v in r["per_class"].items()]
    out.append(_table(["class", "precision", "recall", "F1", "images"], rows))
    out.append("<h3>Most confused pairs</h3>")
    out.append(_table(["true class", "taken for", "images", "share of the class"],
                      [[p["true"], p["predicted"], p["count"], f"{p['share_of_true']:.0%}"]
                       for p in r["confused_pairs"]]))
    out.append("<h3>Worst confusions</h3>")
    for pair in r["worst_confusions"]:
        figs = "".join(
            f"<figure><img alt='{_e(im['path'])}' src='data:image/png;base64,"
            f"{im['thumbnail_png_base64']}'><figcaption>{_e(im['path'])}<br>"
            f"{im['confidence']:.2f}</figcaption></figure>"
            for im in pair["images"] if im.get("thumbnail_png_base64"))
        out.append(f"<p>'{_e(pair['true'])}' taken for '{_e(pair['predicted'])}' "
                   f"({pair['count']}):</p><div class='thumbs'>{figs}</div>")
    if not r["worst_confusions"]:
        out.append("<p>None: every image was classified correctly.</p>")
    out.append("<div class='figs'>" + _png(plots.get("confusion_matrix.png"), "confusion matrix")
               + _png(plots.get("training_curves.png"), "training curves") + "</div>")
    issues = r["label_issues"]
    out.append("<h2 id='labels'>Suspected label errors</h2>")
    if not issues["available"] or issues.get("withheld"):
        out.append(f"<p class='warn' id='labels-note'>Suspected label errors were "
                   f"{_e(issues['note'])}.</p>" if issues.get("withheld")
                   else f"<p id='labels-note'>{_e(issues['note'])}.</p>")
    else:
        out.append(f"<p>{issues['count']} suspected. Method: {_e(issues['method'])}.</p>")
        if issues.get("note"):
            out.append(f"<p id='labels-note'>{_e(issues['note'])}.</p>")
        out.append(_table(["image", "split", "filed as", "looks like", "label quality"],
                          [[i["path"], i["split"], i["given"], i["suggested"],
                            i["given_label_quality"]] for i in issues["listed"]]))
    return "\n".join(out)


def page(summary: str, title: str, dataset: dict[str, Any] | None, result: dict[str, Any],
         names: list[str], plots: dict[str, Path]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<div class='summary' id='summary'>{_e(summary)}</div>"]
    if dataset:
        parts.append(_dataset_section(dataset, names))
    parts.append(_result_section(result, plots))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(out_dir: Path, dataset: dict[str, Any] | None, result: dict[str, Any],
                  summary: str, title: str, names: list[str], ids: dict[str, Any],
                  plots: dict[str, Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if dataset is not None:
        files["dataset_report.json"] = out_dir / "dataset_report.json"
        files["dataset_report.json"].write_text(json.dumps({**ids, **dataset}, indent=2) + "\n")
    lean = copy.deepcopy(result)  # thumbnails live in the page; the JSON names the files
    for pair in lean["worst_confusions"]:
        for im in pair["images"]:
            im.pop("thumbnail_png_base64", None)
    body = {"format": "training-agent/report", "format_version": 1, **ids,
            "summary": summary, **lean,
            "dataset_report": "dataset_report.json" if dataset is not None else None}
    files["report.json"] = out_dir / "report.json"
    files["report.json"].write_text(json.dumps(body, indent=2, default=str) + "\n")
    files["report.html"] = out_dir / "report.html"
    files["report.html"].write_text(page(summary, title, dataset, result, names, plots))
    return files


__all__ = ["NAMES", "page", "write_reports"]
