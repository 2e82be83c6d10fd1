"""The field run's report (``tagctl report RUN_DIR``, ``tag-folder --out RUN_DIR/ --report``): files,
thumbnails, order and counts, escaping. The page itself in a real headless Chromium is
tests/integration/test_report_browser.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from html import unescape
from html.parser import HTMLParser

import pytest
from PIL import Image

from conftest import (HOSTILE_FILES, HOSTILE_MAKE, ROOT, add_hostile_photos, make_field_run as make_run, make_photo,
                      read_details_csv)


# --- files and HTML, no browser ---------------------------------------------------------------------------------


def test_the_template_and_its_assets_ship_with_the_package():
    import tomllib
    from importlib.resources import files

    for name in ("report.html.j2", "report.css", "report.js"):
        assert files("lizaalert_tagger.client").joinpath("templates", name).is_file(), name
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"].get("package-data", {}).get("lizaalert_tagger", [])
    assert any(p.startswith("client/templates/") for p in package_data), \
        "pyproject.toml: [tool.setuptools.package-data] lizaalert_tagger = [\"client/templates/*\"]"


def test_report_cards_order_counts_and_no_outside_references(tmp_path, spec):
    folder, run, fake = make_run(tmp_path, spec, 12)
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    rows = {r["path"]: r for r in read_details_csv(run / "details.csv")}
    cards = re.findall(r'<article class="card[^"]*" data-order="(\d+)" data-path="([^"]*)"', html)
    assert len(cards) == 12 and sorted(p for _, p in cards) == sorted(rows)

    def object_score(row):
        present = [float(row[f"{a.key}_score"]) for a in spec.attributes if a.is_binary and row[f"{a.key}_code"] == "1"]
        return max(present) if present else None

    scores = [object_score(rows[p]) for _, p in cards]
    with_objects = [s for s in scores if s is not None]
    assert scores[:len(with_objects)] == sorted(with_objects, reverse=True), "photos with objects first, by score"
    assert all(s is None for s in scores[len(with_objects):])
    for a in spec.attributes:  # counts per tag at the top
        if a.is_binary:
            count = sum(r[f"{a.key}_code"] == "1" for r in rows.values())
            assert re.search(rf'data-tag="{a.key}" title="{re.escape(a.classes[1].label)}"[^>]*>\s*'
                             rf'{re.escape(a.classes[1].label_ru)} <span class="n">{count}</span>', html), a.key

    # offline: no URL with a scheme or a host, and a CSP that allows only the folder's images and the inline code
    assert not re.search(r'(src|href)="(?![a-z]+/[0-9a-f]+\.(jpg|png)"|#)', html)
    assert not re.search(r"https?://|//[a-z]", html.replace("http-equiv", ""))
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "default-src 'none'" in csp and "img-src 'self'" in csp
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp, tag


def test_thumbnails_use_draft_mode_apply_orientation_and_are_reused(tmp_path, spec, monkeypatch):
    from PIL import JpegImagePlugin

    from lizaalert_tagger.client import tagctl
    from lizaalert_tagger.client.report import build_report

    def add_rotated(folder, fake):
        # 4000x3000 stored (12 MP), EXIF Orientation 6 (rotate 90° clockwise to show): a 3000x4000 portrait
        exif = Image.Exif()
        exif[0x0112] = 6
        data = make_photo(size=(4000, 3000), exif=exif.tobytes())
        (folder / "rotated.jpg").write_bytes(data)
        fake.by_bytes[hashlib.sha256(data).hexdigest()] = "rotated.jpg"
        fake.truth["rotated.jpg"] = next(iter(fake.truth.values()))

    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def draft(self, mode, size):
        before = self.size
        result = real_draft(self, mode, size)
        drafts.append((before, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    folder, run, fake = make_run(tmp_path, spec, 3, extra=add_rotated)
    assert ((4000, 3000), (1280, 960), (2000, 1500)) in drafts, drafts  # decoded at 1/2 scale, not 12 MP in full
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    card = re.search(r'data-path="rotated.jpg"[^>]*data-preview="(previews/\w+\.jpg)".*?<img src="(thumbs/\w+\.jpg)"', html, re.S)
    preview, thumb = (Image.open(run / "report" / card.group(i)) for i in (1, 2))
    assert thumb.size == (240, 320) and preview.size == (960, 1280)  # portrait: the orientation was applied
    pixels = thumb.convert("RGB")
    assert pixels.getpixel((230, 10))[0] > 200 and pixels.getpixel((10, 10))[0] < 100  # the bright corner moved right

    # the same photos again: nothing decoded; a photo gone from the run: its files go too
    summary = build_report(run, spec)
    assert summary.thumbnails_made == 0 and summary.photos == 4
    details = run / "details.csv"
    lines = details.read_text(encoding="utf-8").splitlines(keepends=True)
    details.write_text("".join(line for line in lines if not line.startswith("rotated.jpg;")), encoding="utf-8")
    assert tagctl.main(["report", str(run), "--quiet"]) == 0
    assert not (run / "report" / card.group(2)).exists()
    assert len(list((run / "report" / "thumbs").iterdir())) == 3


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def test_names_and_exif_text_are_escaped_in_the_html(tmp_path, spec):
    folder, run, fake = make_run(tmp_path, spec, 2, extra=add_hostile_photos)
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    parsed = _Tags()
    parsed.feed(html)
    assert [t for t, _ in parsed.tags].count("script") == 1, "only the report's own script"
    assert not [t for t, _ in parsed.tags if t in ("svg", "iframe", "object")]
    assert [t for t, attrs in parsed.tags if t == "img" and dict(attrs).get("src") == "x"] == []
    assert not [a for _, attrs in parsed.tags for a, _ in attrs if a.startswith("on")], "an event handler attribute got in"
    text = "".join(parsed.text)
    assert "<script>window.__xss=1;</script>.jpg" in text and HOSTILE_MAKE in text and HOSTILE_FILES[1] in text
    assert "&lt;script&gt;window.__xss=1;&lt;/script&gt;.jpg" in html


def _elements(html: str, tag: str | None = None, **having: str) -> list[dict[str, str]]:
    """The attributes of every element (of ``tag``) that has each ``having`` attribute (``data_key`` for ``data-key``)."""
    parsed = _Tags()
    parsed.feed(html)
    wanted = {k.replace("_", "-"): v for k, v in having.items()}
    return [dict(attrs) for t, attrs in parsed.tags if (tag is None or t == tag)
            and all(v is None or dict(attrs).get(k) == v for k, v in wanted.items()) and all(k in dict(attrs) for k in wanted)]


def test_cards_carry_codes_scores_and_margin_as_data_for_the_review(tmp_path, spec):
    from lizaalert_tagger.common.certainty import decision_margin

    folder, run, fake = make_run(tmp_path, spec, 9)
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    rows = {r["path"]: r for r in read_details_csv(run / "details.csv")}
    cards = _elements(html, "article", data_codes=None)
    assert sorted(c["data-path"] for c in cards) == sorted(rows)
    for card in cards:
        row = rows[card["data-path"]]
        codes = {a.key: int(row[f"{a.key}_code"]) for a in spec.attributes}
        scores = {a.key: float(row[f"{a.key}_score"]) for a in spec.attributes}
        assert json.loads(card["data-codes"]) == [codes[k] for k in spec.keys]
        assert json.loads(card["data-scores"]) == pytest.approx([scores[k] for k in spec.keys])
        assert float(card["data-margin"]) == pytest.approx(decision_margin(codes, scores, spec), abs=1e-4)
    assert len({c["data-margin"] for c in cards}) > 1, "every photo equally certain: the order would mean nothing"

    # the export's header is the run's labels.csv header, cell for cell
    data = _elements(html, id="review-data")[0]
    labels_header = (run / "labels.csv").read_text(encoding="utf-8").splitlines()[0]
    assert ";".join(json.loads(data["data-header"])) == labels_header
    assert json.loads(data["data-keys"]) == list(spec.keys)


def test_the_viewer_has_a_control_per_attribute_with_the_filter_tokens(tmp_path, spec):
    folder, run, fake = make_run(tmp_path, spec, 3)
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    binary = [a for a in spec.attributes if a.is_binary]
    toggles = _elements(html, "button", data_threshold=None)
    assert [t["data-key"] for t in toggles] == [a.key for a in binary]
    assert [float(t["data-threshold"]) for t in toggles] == [a.threshold for a in binary]
    keys_shown = re.findall(r'class="toggle"[^>]*><kbd>(\d)</kbd> ([^<]+) <small', html)
    assert keys_shown == [(str(i + 1), a.class_for(1).label_ru) for i, a in enumerate(binary)]
    tokens = {t["data-token"] for t in toggles}
    for a in spec.attributes:
        if a.is_binary:
            continue
        group = re.search(rf'<div class="choice" role="radiogroup" data-key="{a.key}".*?</div>', html, re.S).group(0)
        values = _elements(group, "button", role="radio")
        assert [(int(v["data-code"]), v["data-ru"], v["title"]) for v in values] == \
            [(c.code, c.label_ru, c.label) for c in a.classes]
        assert [v["data-token"] for v in values] == ["" if c.code == 0 else f"{a.key}-{c.code}" for c in a.classes]
        tokens |= {v["data-token"] for v in values if v["data-token"]}
    filters = {b["data-tag"] for b in _elements(html, "button", data_tag=None)}
    assert filters <= tokens, "a correction must make the same filter tokens as the model's tags"


def test_the_run_id_is_made_once_and_kept_by_a_rebuilt_report(tmp_path, spec):
    from lizaalert_tagger.client.report import build_report

    folder, run, fake = make_run(tmp_path, spec, 2)
    id_file = run / "report" / "run-id.txt"

    def page_id() -> str:
        return _elements((run / "report" / "index.html").read_text(encoding="utf-8"), id="review-data")[0]["data-run"]

    first = page_id()
    assert re.fullmatch(r"[0-9a-f]{32}", first) and id_file.read_text().strip() == first
    build_report(run, spec)
    assert page_id() == first
    id_file.write_text("<script>x</script>", encoding="utf-8")  # not an id: a new one, never this text
    build_report(run, spec)
    assert re.fullmatch(r"[0-9a-f]{32}", page_id()) and page_id() != first
