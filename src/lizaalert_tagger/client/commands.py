"""What tagctl's commands do, as functions with typed arguments (``tagctl.py`` only parses argv).

``predict`` and ``explain`` send their photos through the one bounded loop
(:func:`lizaalert_tagger.client.runner.run_bounded`), one at a time so that the lines come out in
the order given; ``tag-folder`` is :mod:`lizaalert_tagger.client.tag_folder`. Each photo goes as
``upload`` says (:mod:`lizaalert_tagger.client.upload`: by default a reduced copy of a large photo);
overlays are drawn on the original. A photo that fails
is one ``tagctl: PHOTO: reason`` line on stderr and exit code 1; an error that dooms every photo
raises, and the CLI prints it as one line.
"""
from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lizaalert_tagger.client.http import MODEL_NAME, ClientError, TaggerClient
from lizaalert_tagger.client.runner import Outcome, dooms_every_photo, error_text, one_line, run_bounded
from lizaalert_tagger.client.upload import Upload
from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec, is_tag, load_spec


def print_json(body: Any) -> None:
    print(json.dumps(body, ensure_ascii=False, indent=2))


def client_spec(path: Path | None) -> AttributeSpec:
    """The spec given with ``--spec``, else the one shipped with the package (no checkout needed)."""
    return load_spec(path or DEFAULT_SPEC_PATH)


def check_folder_writable(folder: Path, what: str) -> None:
    """Fail before the work, not after: ``ClientError`` when nothing can be written into ``folder``."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ClientError(f"cannot write {what}: {e.strerror} (folder {folder})") from None


def prepare_run_dir(run_dir: Path) -> None:
    """``--out DIR/``: the folder, created if missing, and writable."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ClientError(f"--out {run_dir}/ is a file, not a folder; give a folder for the run's files, or a CSV name without /")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClientError(f"cannot create --out folder {run_dir}: {e.strerror}") from None
    check_folder_writable(run_dir, f"--out {run_dir}/")


def raise_if_stopped(outcome: Outcome) -> None:
    """A run stopped by Ctrl-C or by an error that dooms every photo ends the command here."""
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.fatal is not None:
        raise outcome.fatal


# --- predict, explain -----------------------------------------------------------------------------------


def format_answer(answer: Mapping[str, Any], lang: str = "en") -> str:
    """One line per photo: its tags, in English or Russian, and the model that answered."""
    attributes = answer.get("attributes", {})
    if lang == "ru":
        tags = [v["label_ru"] for v in attributes.values() if is_tag(v.get("code", 0))]
    else:
        tags = list(answer.get("tags", []))
    model = answer.get("model", {})
    return f"{', '.join(tags) if tags else '(nothing)'}   [{model.get('name', '?')} {model.get('version', '?')}]"


def _report_failure(item: tuple[int, str], reason: str) -> None:
    print(f"tagctl: {item[1]}: {reason}", file=sys.stderr)


def predict(client: TaggerClient, photos: list[str], model: str = MODEL_NAME, version: str | None = None,
            as_json: bool = False, lang: str = "en", upload: Upload = Upload()) -> int:
    """One line per photo; ``as_json``: JSON Lines, one compact ``{"file": PHOTO, ...answer}`` per photo."""
    def work(item: tuple[int, str]) -> dict[str, Any]:
        return client.predict(upload.body(Path(item[1]).read_bytes()), model, version)

    def done(item: tuple[int, str], answer: dict[str, Any]) -> None:
        photo = item[1]
        if as_json:
            print(json.dumps({"file": photo, **answer}, ensure_ascii=False), flush=True)
        else:
            print(f"{photo}: {format_answer(answer, lang)}", flush=True)

    outcome = run_bounded(list(enumerate(photos)), work, done, 1, on_failure=_report_failure)
    raise_if_stopped(outcome)
    return 1 if outcome.failures else 0


def parse_target(text: str | None) -> str:
    """``--target`` as the server's ``target`` field: ``all``, attribute keys (explained at their answered
    value) and ``key:value`` pairs, e.g. ``car:1,season:winter`` or ``all``; the server checks keys and values.
    Empty: the default (the objects found)."""
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    for item in items:
        key, sep, value = item.partition(":")
        if not key.strip() or (sep and not value.strip()):
            raise ClientError(f"--target {text!r}: expected all, attribute names or attribute:value pairs, "
                              "e.g. all, season or car:1,season:winter")
    return ",".join(items)


def _bad_target(e: BaseException) -> bool:
    """The server refused ``--target``: the same for every photo."""
    return isinstance(e, ClientError) and e.status == 400 and isinstance(e.body, dict) and e.body.get("type") == "bad_target"


def explain(client: TaggerClient, photos: list[str], out: Path, target: str, size: int,
            model: str = MODEL_NAME, version: str | None = None, lang: str = "en", upload: Upload = Upload()) -> int:
    """One overlay PNG per photo in ``out`` (``<photo name>.png``, numbered when names repeat): the
    Grad-CAM maps of the tags found drawn over the photo, with a legend of every tag and its score."""
    from lizaalert_tagger.common.overlay import draw_overlay, open_photo

    prepare_run_dir(out)
    used: set[str] = set()

    def work(item: tuple[int, str]):
        data = Path(item[1]).read_bytes()
        answer = client.explain(upload.body(data), model, version, target=target)
        try:
            return answer, draw_overlay(open_photo(data, size), answer)
        except Exception as e:  # noqa: BLE001 - Pillow cannot draw this photo: that photo fails
            raise ValueError(f"cannot draw the overlay: {error_text(e)}") from None

    def done(item: tuple[int, str], result) -> None:
        answer, image = result
        stem = Path(item[1]).name
        name, number = f"{stem}.png", 1
        while name in used:
            number += 1
            name = f"{stem}-{number}.png"
        used.add(name)
        try:
            image.save(out / name, "PNG")
        except OSError as e:
            raise ClientError(f"cannot write {out / name}: {error_text(e)}") from None
        print(f"{item[1]}: {format_answer(answer, lang)} -> {out / name}", flush=True)

    outcome = run_bounded(list(enumerate(photos)), work, done, 1, on_failure=_report_failure,
                          is_fatal=lambda e: dooms_every_photo(e) or _bad_target(e))
    raise_if_stopped(outcome)
    return 1 if outcome.failures else 0


# --- token, models ------------------------------------------------------------------------------------------


def token(client: TaggerClient, kind: str, renew: bool) -> int:
    """Print a working token (renewed if the server refuses the stored one, or with ``renew``)."""
    if renew:
        print(client.renew_token(kind))
        return 0
    if kind == "inference":
        client.ping()  # renews through the key file or API key if needed
    else:
        client.management("GET", "/models", "list models")
    print(getattr(client.keys, kind))
    return 0


def register(client: TaggerClient, mar: str, settings: Mapping[str, int | None]) -> Any:
    """Register an archive with only the settings given: TorchServe takes the rest from its model-config.yaml."""
    params: dict[str, Any] = {"url": mar, "synchronous": "true"}
    params.update((key, value) for key, value in settings.items() if value is not None)
    return client.management("POST", "/models", f"register {mar}", params=params)


# --- score, report --------------------------------------------------------------------------------------------


def score(predicted: Path, truth: Path, spec: AttributeSpec, as_json: bool = False, min_score: float | None = None) -> int:
    """Score a predicted CSV against a truth CSV (both in the seed's format); a truth photo without a
    prediction counts as wrong. Exit 1 if the score is below ``min_score``."""
    from lizaalert_tagger.common.labels_csv import read_labels
    from lizaalert_tagger.common.scoring import score_codes

    try:
        pred_by_name = {r.filename: r.labels for r in read_labels(predicted, spec).rows}
        truth_by_name = {r.filename: r.labels for r in read_labels(truth, spec).rows}
    except (OSError, ValueError) as e:
        raise ClientError(str(e)) from None
    common = sorted(set(pred_by_name) & set(truth_by_name))
    missing = sorted(set(truth_by_name) - set(pred_by_name))
    if not common:
        raise ClientError(f"no file names in common between {predicted} and {truth}")
    if missing:
        print(f"warning: {len(missing)} photos of the truth have no prediction (e.g. {missing[0]}); they count as wrong", file=sys.stderr)
    names = common + missing

    def predicted_code(name: str, key: str, binary: bool) -> int:
        if name in pred_by_name:
            return pred_by_name[name][key]
        return 1 - truth_by_name[name][key] if binary else -1  # a missing prediction is always wrong

    result = score_codes(
        {a.key: [truth_by_name[n][a.key] for n in names] for a in spec.attributes},
        {a.key: [predicted_code(n, a.key, a.is_binary) for n in names] for a in spec.attributes},
        spec,
    )
    if as_json:
        print_json(result.to_dict())
    else:
        print(result.table())
    if min_score is not None and result.overall < min_score:
        print(f"tagctl: score {result.overall:.4f} is below --min-score {min_score}", file=sys.stderr)
        return 1
    return 0


def print_report_summary(summary) -> None:
    print(f"report: {summary.index} ({summary.photos} photos, {summary.thumbnails_made} new thumbnails)")
    if summary.thumbnails_failed:
        name, reason = sorted(summary.thumbnails_failed.items())[0]
        print(f"warning: {len(summary.thumbnails_failed)} photos have no thumbnail (e.g. {name}: {one_line(reason)})",
              file=sys.stderr)


def report(run_dir: Path, spec: AttributeSpec, photos: Path | None, thumb_size: int, preview_size: int,
           jobs: int | None = None, quiet: bool = False) -> int:
    """RUN_DIR/report/index.html from RUN_DIR's details.csv: works offline, no server needed."""
    import warnings

    from lizaalert_tagger.client.report import build_report

    if not run_dir.is_dir():
        raise ClientError(f"{run_dir} is not a folder" if run_dir.exists() else f"folder {run_dir} does not exist")
    check_folder_writable(run_dir, f"the report into {run_dir}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        summary = build_report(run_dir, spec, photos, thumb_size, preview_size, jobs, progress=not quiet)
    print_report_summary(summary)
    return 0
