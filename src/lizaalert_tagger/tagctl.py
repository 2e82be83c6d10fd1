#!/usr/bin/env python3
"""tagctl: the command line of the LizaAlert tagger's TorchServe.

Connection settings (flags override environment variables):
  --inference-url   $LIZAALERT_INFERENCE_URL   (default http://127.0.0.1:8080)
  --management-url  $LIZAALERT_MANAGEMENT_URL  (default http://127.0.0.1:8081)
  --key-file        $LIZAALERT_KEY_FILE        (default run/key_file.json, written by `make serve`)
  --token           $LIZAALERT_TOKEN           (a token to use instead of the key file)

Errors are one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from lizaalert_tagger.client import DEFAULT_KEY_FILE, MODEL_NAME, ClientError, TaggerClient

COMMANDS: dict[str, Callable[[argparse.Namespace, TaggerClient], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _print_json(body: Any) -> None:
    print(json.dumps(body, ensure_ascii=False, indent=2))


def format_answer(answer: dict[str, Any], lang: str = "en") -> str:
    """One line per photo: the tags present, in English or Russian."""
    attributes = answer.get("attributes", {})
    if lang == "ru":
        tags = [v["label_ru"] for v in attributes.values() if v.get("code", 0) != 0]
    else:
        tags = list(answer.get("tags", []))
    model = answer.get("model", {})
    return f"{', '.join(tags) if tags else '(nothing)'}   [{model.get('name', '?')} {model.get('version', '?')}]"


@command("predict")
def cmd_predict(args: argparse.Namespace, client: TaggerClient) -> int:
    failed = 0
    for photo in args.photos:
        try:
            answer = client.predict(Path(photo).read_bytes(), args.model, args.version)
        except OSError as e:
            print(f"{photo}: cannot read: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        except ClientError as e:
            print(f"{photo}: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            _print_json(answer if len(args.photos) == 1 else {"file": photo, **answer})
        else:
            print(f"{photo}: {format_answer(answer, args.lang)}")
    return 1 if failed else 0


@command("token")
def cmd_token(args: argparse.Namespace, client: TaggerClient) -> int:
    """Print a working token (renewed if the server refuses the stored one)."""
    if args.renew:
        print(client.renew_token(args.kind))
        return 0
    if args.kind == "inference":
        client.ping()  # renews through the key file or API key if needed
    else:
        client.management("GET", "/models", "list models")
    print(getattr(client.keys, args.kind))
    return 0


@command("models")
def cmd_models(args: argparse.Namespace, client: TaggerClient) -> int:
    action = args.action
    if action == "list":
        body = client.management("GET", "/models", "list models")
    elif action == "describe":
        path = f"/models/{args.name}" + (f"/{args.version}" if args.version else "/all")
        body = client.management("GET", path, f"describe {args.name}")
    elif action == "register":
        params = {"url": args.mar, "initial_workers": args.workers, "synchronous": "true"}
        if args.batch_size:
            params.update(batch_size=args.batch_size, max_batch_delay=args.max_batch_delay)
        body = client.management("POST", "/models", f"register {args.mar}", params=params)
    elif action == "set-default":
        body = client.management("PUT", f"/models/{args.name}/{args.version}/set-default", f"set-default {args.name} {args.version}")
    elif action == "scale":
        path = f"/models/{args.name}" + (f"/{args.version}" if args.version else "")
        params = {"min_worker": args.min, "max_worker": args.max, "synchronous": "true"}
        body = client.management("PUT", path, f"scale {args.name}", params=params)
    elif action == "unregister":
        body = client.management("DELETE", f"/models/{args.name}/{args.version}", f"unregister {args.name} {args.version}")
    else:  # argparse prevents this
        raise ClientError(f"unknown models action {action!r}")
    _print_json(body)
    return 0


def list_photos(folder: Path) -> list[Path]:
    from lizaalert_tagger.labels_csv import IMAGE_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@command("tag-folder")
def cmd_tag_folder(args: argparse.Namespace, client: TaggerClient) -> int:
    """Tag every photo under a folder through the server; write the seed's CSV."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    from lizaalert_tagger.labels_csv import write_labels
    from lizaalert_tagger.spec import load_spec

    spec = load_spec(args.spec)
    folder = Path(args.folder)
    photos = list_photos(folder)
    if not photos:
        raise ClientError(f"no photos under {folder} (looked for .jpg, .png, .webp, .bmp, .tif, .gif)")

    def tag(path: Path) -> dict[str, int]:
        answer = client.predict(path.read_bytes(), args.model, args.version)
        return {a.key: int(answer["attributes"][a.key]["code"]) for a in spec.attributes}

    results: dict[Path, dict[str, int]] = {}
    failures: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = {pool.submit(tag, p): p for p in photos}
        for future in tqdm(as_completed(futures), total=len(futures), desc="tag", unit="photo", disable=args.quiet):
            path = futures[future]
            try:
                results[path] = future.result()
            except (ClientError, OSError, KeyError, ValueError) as e:
                failures[path] = str(e)
    rows = [(p.relative_to(folder).as_posix(), results[p]) for p in photos if p in results]
    write_labels(args.out, rows, spec)
    print(f"tagged {len(rows)} of {len(photos)} photos -> {args.out}")
    for path, reason in sorted(failures.items()):
        print(f"FAILED {path.relative_to(folder)}: {reason}", file=sys.stderr)
    return 1 if failures else 0


@command("score")
def cmd_score(args: argparse.Namespace, client: TaggerClient) -> int:
    """Score a predicted CSV against a truth CSV (both in the seed's format)."""
    from lizaalert_tagger.labels_csv import read_labels
    from lizaalert_tagger.scoring import score_codes
    from lizaalert_tagger.spec import load_spec

    spec = load_spec(args.spec)
    try:
        predicted, truth = read_labels(args.predicted, spec), read_labels(args.truth, spec)
    except (OSError, ValueError) as e:
        raise ClientError(str(e)) from None
    pred_by_name = {r.filename: r.labels for r in predicted.rows}
    truth_by_name = {r.filename: r.labels for r in truth.rows}
    common = sorted(set(pred_by_name) & set(truth_by_name))
    missing = sorted(set(truth_by_name) - set(pred_by_name))
    if not common:
        raise ClientError(f"no file names in common between {args.predicted} and {args.truth}")
    if missing:
        print(f"warning: {len(missing)} photos of the truth have no prediction (e.g. {missing[0]}); they count as wrong", file=sys.stderr)
    names = common + missing

    def predicted_code(name: str, key: str, binary: bool) -> int:
        if name in pred_by_name:
            return pred_by_name[name][key]
        return 1 - truth_by_name[name][key] if binary else -1  # a missing prediction is always wrong

    score = score_codes(
        {a.key: [truth_by_name[n][a.key] for n in names] for a in spec.attributes},
        {a.key: [predicted_code(n, a.key, a.is_binary) for n in names] for a in spec.attributes},
        spec,
    )
    if args.json:
        _print_json(score.to_dict())
    else:
        print(score.table())
    if args.min_score is not None and score.overall < args.min_score:
        print(f"tagctl: score {score.overall:.4f} is below --min-score {args.min_score}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tagctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference-url", help="inference API base URL")
    parser.add_argument("--management-url", help="management API base URL")
    parser.add_argument("--key-file", type=Path, help=f"TorchServe key_file.json (default: {DEFAULT_KEY_FILE})")
    parser.add_argument("--token", help="token to send instead of reading the key file")
    parser.add_argument("--retries", type=int, default=5, help="retries on connection errors and 503 (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("predict", help="tag photos and print their tags", formatter_class=fmt)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--json", action="store_true", help="print the full JSON answer")
    p.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the tags")

    from lizaalert_tagger.spec import DEFAULT_SPEC_PATH

    p = sub.add_parser("tag-folder", help="tag every photo of a folder; write the seed's CSV", formatter_class=fmt)
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, required=True, help="CSV to write (seed's format: ';', Russian header, codes)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec (for the CSV columns)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("score", help="score a predicted CSV against a truth CSV", formatter_class=fmt)
    p.add_argument("predicted", type=Path)
    p.add_argument("truth", type=Path)
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--min-score", type=float, help="exit 1 if the score is below this")

    p = sub.add_parser("token", help="print a working token (for curl)", formatter_class=fmt)
    p.add_argument("--kind", choices=("inference", "management"), default="inference", help="which API the token is for")
    p.add_argument("--renew", action="store_true", help="ask the server for a fresh token with the API key")

    p = sub.add_parser("models", help="manage models and versions (TorchServe management API)", formatter_class=fmt)
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("list", help="registered models", formatter_class=fmt)
    q = msub.add_parser("describe", help="versions, workers and status of a model", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="one version (default: all)")
    q = msub.add_parser("register", help="register an archive from the server's model store", formatter_class=fmt)
    q.add_argument("mar", help="archive file name in the model store, e.g. lizaalert_tagger_2.0.mar")
    q.add_argument("--workers", type=int, default=1, help="initial workers")
    q.add_argument("--batch-size", type=int, help="batch size (default: the archive's model-config.yaml)")
    q.add_argument("--max-batch-delay", type=int, default=10, help="ms to wait for a batch to fill (with --batch-size)")
    q = msub.add_parser("set-default", help="make a version the default one (no restart, no dropped requests)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")
    q = msub.add_parser("scale", help="set the number of workers", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="version (default: the default version)")
    q.add_argument("--min", type=int, required=True, help="minimum workers")
    q.add_argument("--max", type=int, required=True, help="maximum workers")
    q = msub.add_parser("unregister", help="remove a version (it must not be the default while others exist)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = TaggerClient(args.inference_url, args.management_url, args.key_file, args.token, args.retries, args.timeout)
    try:
        return COMMANDS[args.command](args, client)
    except ClientError as e:
        print(f"tagctl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tagctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
