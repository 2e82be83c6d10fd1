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
import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from lizaalert_tagger.client import commands
from lizaalert_tagger.client.http import ENV_INFERENCE_URL, ENV_MANAGEMENT_URL, MODEL_NAME, ClientError, TaggerClient
from lizaalert_tagger.client.run_folder import RunFilesError
from lizaalert_tagger.client.runner import error_text, one_line
from lizaalert_tagger.client.upload import ORIGINAL, REDUCE_ABOVE, SEND_LONG_SIDE, Upload
from lizaalert_tagger.common.labels_csv import LabelsFormatError
from lizaalert_tagger.common.spec import SpecError

# The thin CLI: argv -> the typed functions of ``commands`` and ``tag_folder``; nothing else lives here.
SPEC_HELP = "attribute spec (default: the one shipped with tagctl)"


def upload_of(args: argparse.Namespace) -> Upload:
    """``--send-original``, else a reduced copy of ``--send-size`` px."""
    return ORIGINAL if args.send_original else Upload(long_side=args.send_size)


def cmd_predict(args: argparse.Namespace, client: TaggerClient) -> int:
    return commands.predict(client, args.photos, args.model, args.version, args.json, args.lang, upload_of(args))


def cmd_explain(args: argparse.Namespace, client: TaggerClient) -> int:
    return commands.explain(client, args.photos, Path(args.out), commands.parse_target(args.target), args.size,
                            args.model, args.version, args.lang, upload_of(args))


def cmd_tag_folder(args: argparse.Namespace, client: TaggerClient) -> int:
    from lizaalert_tagger.client.tag_folder import TagFolderJob, tag_folder

    job = TagFolderJob(
        folder=args.folder, out=args.out, spec=commands.client_spec(args.spec), restart=args.restart,
        concurrency=args.concurrency, model=args.model, version=args.version, quiet=args.quiet,
        explain=args.explain, report=args.report, thumb_size=args.thumb_size, preview_size=args.preview_size,
        upload=upload_of(args),
    )
    return tag_folder(job, client)


def cmd_report(args: argparse.Namespace, client: TaggerClient) -> int:
    return commands.report(Path(args.run_dir), commands.client_spec(args.spec), args.photos, args.thumb_size,
                           args.preview_size, args.jobs, args.quiet)


def cmd_review_merge(args: argparse.Namespace, client: TaggerClient) -> int:
    from lizaalert_tagger.client.review import review_merge

    return review_merge(args.run_dir, args.exports, commands.client_spec(args.spec), args.decided)


def cmd_score(args: argparse.Namespace, client: TaggerClient) -> int:
    return commands.score(args.predicted, args.truth, commands.client_spec(args.spec), args.json, args.min_score)


def cmd_token(args: argparse.Namespace, client: TaggerClient) -> int:
    return commands.token(client, args.kind, args.renew)


def cmd_models(args: argparse.Namespace, client: TaggerClient) -> int:
    name, version = getattr(args, "name", None), getattr(args, "version", None)
    if args.action == "list":
        body = client.management("GET", "/models", "list models")
    elif args.action == "describe":
        body = client.management("GET", f"/models/{name}/{version or 'all'}", f"describe {name}")
    elif args.action == "register":
        body = commands.register(client, args.mar, {"initial_workers": args.workers, "batch_size": args.batch_size,
                                                    "max_batch_delay": args.max_batch_delay})
    elif args.action == "set-default":
        body = client.management("PUT", f"/models/{name}/{version}/set-default", f"set-default {name} {version}")
    elif args.action == "scale":
        params = {"min_worker": args.min, "max_worker": args.max, "synchronous": "true"}
        body = client.management("PUT", f"/models/{name}" + (f"/{version}" if version else ""), f"scale {name}", params=params)
    elif args.action == "unregister":
        body = client.management("DELETE", f"/models/{name}/{version}", f"unregister {name} {version}")
    else:  # argparse prevents this
        raise ClientError(f"unknown models action {args.action!r}")
    commands.print_json(body)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, TaggerClient], int]] = {
    "predict": cmd_predict, "explain": cmd_explain, "tag-folder": cmd_tag_folder, "report": cmd_report,
    "score": cmd_score, "token": cmd_token, "models": cmd_models, "review-merge": cmd_review_merge,
}
OFFLINE_COMMANDS = ("score", "report", "review-merge")  # the commands that do not talk to the server


# --- argv ----------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (subcommands' parsers are of this class as well)."""

    def error(self, message: str):
        self.exit(2, f"tagctl: {one_line(message)} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; an option whose default is None says in its help what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _number(kind: type, minimum: float, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 1, "a whole number >= 1")
non_negative_int = _number(int, 0, "a whole number >= 0")
positive_float = _number(float, 1e-9, "a number > 0")


def check_url(value: str | None, flag: str, env: str) -> None:
    """A base URL given by ``flag`` or ``$env`` must be ``http(s)://host[:port]``."""
    source = flag if value else f"${env}"
    value = value or os.environ.get(env)
    if not value:
        return  # the client's default
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ClientError(f"{source} {value!r} is not a URL: expected http://host:port")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")


def _upload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--send-size", type=positive_int, default=SEND_LONG_SIDE, metavar="PX",
                   help=f"a photo whose long side exceeds {REDUCE_ABOVE} x PX is sent as a JPEG copy, upright, of long side PX "
                        "(the model sees 256 px; EXIF time and GPS are read from the original, overlays drawn on it)")
    p.add_argument("--send-original", action="store_true",
                   help="send every photo as it is, byte for byte (more upload, more work for the server)")


def _report_options(p: argparse.ArgumentParser) -> None:
    from lizaalert_tagger.client.report import PREVIEW_SIZE, THUMB_SIZE

    p.add_argument("--thumb-size", type=positive_int, default=THUMB_SIZE, help="report: thumbnails' long side, px")
    p.add_argument("--preview-size", type=non_negative_int, default=PREVIEW_SIZE,
                   help="report: long side of the photo shown on click, px (0: the thumbnail, a smaller report)")


def _add_photo_commands(sub, fmt) -> None:
    p = sub.add_parser("predict", help="tag photos and print their tags", formatter_class=fmt)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    _model_options(p)
    p.add_argument("--json", action="store_true", help='print JSON Lines: one {"file": PHOTO, ...full answer} per line')
    p.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the tags")
    _upload_options(p)

    p = sub.add_parser("explain", help="where the model looked: one overlay PNG per photo", formatter_class=fmt)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the overlays (created if missing): DIR/<photo name>.png")
    p.add_argument("--target", metavar="TARGET",
                   help="what to explain besides the objects found: 'all' (every attribute), attribute names "
                        "(season,terrain: their answered values) or other values (car:1, season:winter)")
    p.add_argument("--size", type=positive_int, default=1024, help="long side of the overlay's photo, px")
    _model_options(p)
    p.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the printed tags")
    _upload_options(p)


def _add_field_commands(sub, fmt) -> None:
    p = sub.add_parser("tag-folder", help="tag every photo of a folder; write the seed's CSV or a run folder",
                       formatter_class=fmt)
    p.add_argument("folder", type=Path, help="photos, sub-folders included")
    p.add_argument("--out", required=True, metavar="CSV|RUN_DIR/",
                   help="a CSV to write (seed's format: ';', Russian header, codes), or a folder (ends with / or "
                        "exists) for labels.csv (the same CSV), details.csv (scores, tags, EXIF time and GPS), "
                        "photos.geojson and failed.csv; the photos already in it are skipped")
    p.add_argument("--restart", action="store_true", help="tag every photo again and replace --out")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight")
    _model_options(p)
    p.add_argument("--spec", type=Path, help=f"{SPEC_HELP}; for the CSV columns")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true",
                   help="then write RUN_DIR/report/index.html (as `tagctl report RUN_DIR`; needs --out RUN_DIR/)")
    p.add_argument("--explain", action="store_true",
                   help="then fetch an explanation overlay for every photo with an object found (the server's "
                        "/explanations, the maps of the objects found: about 2.7x a prediction for one object through TorchServe "
                        "on a 2-core AMD EPYC) into RUN_DIR/explanations/, which the report shows")
    _upload_options(p)
    _report_options(p)

    p = sub.add_parser("report", help="an offline HTML report of a run folder (no server needed)", formatter_class=fmt)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of tag-folder")
    p.add_argument("--photos", type=Path,
                   help="the photo folder (default: the one tag-folder wrote into RUN_DIR/run.json)")
    p.add_argument("--jobs", type=positive_int, help="threads making thumbnails (default: the CPU count, at most 8)")
    p.add_argument("--spec", type=Path, help=f"{SPEC_HELP}; for the labels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _report_options(p)

    p = sub.add_parser("review-merge", formatter_class=fmt,
                       help="merge reviewers' reviewed.csv exports into RUN_DIR/reviewed.csv; exit 3 when photos "
                            "were left out (conflicts: same photo, different answers; listed in RUN_DIR/review-conflicts.csv)",
                       description="Merge the report's exports into RUN_DIR/reviewed.csv. A photo with different answers is a "
                                   "conflict: left out, listed on stderr and in RUN_DIR/review-conflicts.csv. Exit status: "
                                   "0 all merged; 3 merged, but conflicts, unusable rows or photos of another run were "
                                   "left out; 1 nothing written (an error).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of tag-folder")
    p.add_argument("exports", type=Path, nargs="+", metavar="REVIEWED_CSV",
                   help="the report's exports (the seed's CSV); the merge replaces RUN_DIR/reviewed.csv, so name it here to keep it")
    p.add_argument("--decided", type=Path, metavar="CSV",
                   help="a coordinator's export whose rows win over the exports' (settles conflicts)")
    p.add_argument("--spec", type=Path, help=f"{SPEC_HELP}; for the CSV columns")

    p = sub.add_parser("score", help="score a predicted CSV against a truth CSV", formatter_class=fmt)
    p.add_argument("predicted", type=Path)
    p.add_argument("truth", type=Path)
    p.add_argument("--spec", type=Path, help=SPEC_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--min-score", type=float, help="exit 1 if the score is below this")


def _add_server_commands(sub, fmt) -> None:
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
    q.add_argument("--workers", type=positive_int,
                   help="initial workers (default: the archive's model-config.yaml minWorkers/maxWorkers, "
                        "which TorchServe prefers to this flag; else the server's default_workers_per_model); "
                        "`models scale` changes them later")
    q.add_argument("--batch-size", type=positive_int,
                   help="batch size (default: the archive's model-config.yaml batchSize)")
    q.add_argument("--max-batch-delay", type=non_negative_int,
                   help="ms to wait for a batch to fill (default: the archive's model-config.yaml maxBatchDelay)")
    q = msub.add_parser("set-default", help="make a version the default one (no restart, no dropped requests)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")
    q = msub.add_parser("scale", help="set the number of workers", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="version (default: the default version)")
    q.add_argument("--min", type=non_negative_int, required=True, help="minimum workers")
    q.add_argument("--max", type=non_negative_int, required=True, help="maximum workers")
    q = msub.add_parser("unregister", help="remove a version (it must not be the default while others exist)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tagctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference-url", help="inference API base URL")
    parser.add_argument("--management-url", help="management API base URL")
    parser.add_argument("--key-file", type=Path,
                        help="TorchServe key_file.json (default: run/key_file.json of the checkout tagctl is installed "
                             "from, else of the current folder; written by `make serve`)")
    parser.add_argument("--token", help="token to send instead of reading the key file")
    parser.add_argument("--retries", type=non_negative_int, default=5,
                        help="retries on connection errors and 503 (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=120.0,
                        help="seconds per request (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_photo_commands(sub, _HelpFormatter)
    _add_field_commands(sub, _HelpFormatter)
    _add_server_commands(sub, _HelpFormatter)
    return parser


def _fail(message: str) -> int:
    print(f"tagctl: {one_line(message)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error is one ``tagctl: ...`` line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command not in OFFLINE_COMMANDS:
            check_url(args.inference_url, "--inference-url", ENV_INFERENCE_URL)
            check_url(args.management_url, "--management-url", ENV_MANAGEMENT_URL)
        # one pooled connection per request in flight: tag-folder's --concurrency may exceed the default 32
        client = TaggerClient(args.inference_url, args.management_url, args.key_file, args.token, args.retries, args.timeout,
                              pool_size=max(32, getattr(args, "concurrency", 0)))
        return COMMANDS[args.command](args, client)
    except KeyboardInterrupt:
        print("tagctl: interrupted", file=sys.stderr)
        return 130
    except (ClientError, SpecError, LabelsFormatError, RunFilesError) as e:
        return _fail(str(e))
    except requests.RequestException as e:  # before OSError: requests' errors are OSErrors
        return _fail(f"request failed: {e}")
    except OSError as e:
        return _fail(error_text(e))
    except Exception as e:  # noqa: BLE001 - a bug still gets one line, not a traceback
        return _fail(f"unexpected {type(e).__name__}: {e} (a bug in tagctl; please report it)")


if __name__ == "__main__":
    sys.exit(main())
