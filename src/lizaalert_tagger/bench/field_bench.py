"""Field throughput: ``tagctl tag-folder DIR --out RUN/`` against what the server itself serves,
with reduced copies (tagctl's default) and with the originals.

The target: tagging a folder runs at >= 80% of the served throughput that ``lizaalert-bench``
measures at the same concurrency (hey loading one photo over and over), for 1,000 generated 12-MP
photos. This measures both on one TorchServe, one after the other:

1. ``--count`` 12-MP photos (``bench.bench_photo``: a generated scene with sensor noise, JPEG q90,
   ~2.5 MB) in 10 sub-folders, ``--exif-fraction`` of them with EXIF time and GPS; ``--distinct``
   different pictures are made (seconds each) and repeated with their own EXIF. Kept in
   ``--work`` between runs. Or ``--photos DIR``: the photos of a folder as they are (held-out
   scenes of ``lizaalert-scenes``, say), with ``--truth`` their labels;
2. TorchServe from ``--archive`` with the project's config (as ``lizaalert-bench``), or the server
   given by ``--inference-url``/``--key-file``;
3. per concurrency, per way of sending (``--send``: a reduced copy's long side, ``original``):
   hey on the first photo as tagctl sends it -> tag-folder ``--out RUN/ --restart`` (the real CLI,
   a separate process, its wall time from start to exit) -> hey again; ratio = tag-folder / mean
   of the two hey runs. Also the bytes sent per photo and, for a server started here, its
   CPU-seconds per photo during the tag-folder run (launcher, Java frontend and workers, psutil);
4. the share of tags on which each way agrees with ``original`` and, with ``--truth``, each run's
   score (``tagctl score``);
5. with ``--report``, the time of ``tagctl report`` too (thumbnails in parallel, draft mode);
   with ``--sweep N``, first the model's input from copies of several sizes and qualities against
   the original's on N of the photos (no server: how the copy's size and quality were chosen).

    lizaalert-field-bench                                          # 1,000 photos, c=16 (10-30 min on 2 cores)
    lizaalert-field-bench --count 48 --concurrency 4 --distinct 4  # a quick look
    lizaalert-field-bench --photos build/held-12mp/images --truth build/held-12mp/labels.csv --concurrency 8

Needs ``hey`` (``make system-tools``) and, without --inference-url, the default archive (``make model``).
Exit 1 when a ratio is below ``--min-ratio``. Raw figures go to WORK/field_bench.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from lizaalert_tagger.bench.bench import SIZES, bench_photo
from lizaalert_tagger.bench.hey import HeyError, require_hey, run_hey
from lizaalert_tagger.bench.reduction import SendMode, bytes_per_photo, input_sweep, print_sweep, server_cpu_seconds, tag_agreement
from lizaalert_tagger.client.http import MODEL_NAME, ClientError
from lizaalert_tagger.client.tag_folder import list_photos
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.paths import DEFAULT_ARCHIVE, ROOT
from lizaalert_tagger.ops.torchserve import TorchServe, free_port

DEFAULT_WORK = ROOT / "build" / "field-bench"


def _base_photo(job: tuple[Path, str, int]) -> Path:
    path, name, seed = job
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bench_photo(name, seed=seed))
        tmp.replace(path)
    return path


def make_photos(work: Path, count: int, distinct: int, name: str, exif_fraction: float, jobs: int) -> Path:
    """``work/photos/partNN/IMG_NNNNN.jpg``: ``count`` photos from ``distinct`` pictures, some with EXIF."""
    from lizaalert_tagger.scenes.exif import with_exif

    size = SIZES[name]
    base_dir = work / f"base-{name}-{size[0]}x{size[1]}"
    base_dir.mkdir(parents=True, exist_ok=True)
    todo = [(base_dir / f"{k:04d}.jpg", name, 100 + k) for k in range(min(distinct, count))]
    missing = [job for job in todo if not job[0].exists()]
    if missing:
        print(f"making {len(missing)} distinct {size[0]}x{size[1]} photos ({jobs} processes) ...", flush=True)
        with get_context("spawn").Pool(jobs) as pool:
            pool.map(_base_photo, missing)
    bases = [job[0].read_bytes() for job in todo]
    folder = work / "photos"
    for i in range(count):
        path = folder / f"part{i % 10:02d}" / f"IMG_{i:05d}.jpg"
        data = with_exif(bases[i % len(bases)], 777, i, {}, exif_fraction)
        if path.exists() and path.stat().st_size == len(data):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for stale in folder.rglob("IMG_*.jpg"):
        if int(stale.stem[4:]) >= count:
            stale.unlink()
    return folder


def tagctl_command(ts: dict) -> list[str]:
    """``tagctl`` of this environment with the server's URLs and credentials."""
    script = Path(sys.executable).parent / "tagctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lizaalert_tagger.client.tagctl"]
    command += ["--inference-url", ts["inference_url"], "--management-url", ts["management_url"]]
    if ts.get("key_file"):
        command += ["--key-file", str(ts["key_file"])]
    if ts.get("token"):
        command += ["--token", ts["token"]]
    return command


@dataclass
class Photos:
    """The folder tagged, its photos, and the mean request body of each way of sending (bytes)."""

    folder: Path
    files: list[Path]
    bytes_sent: dict[str, float] = field(default_factory=dict)

    @property
    def sample(self) -> Path:
        """What hey sends over and over: the first photo."""
        return self.files[0]


@dataclass
class Server:
    """The server measured: tagctl's connection flags, a client, and the PID whose process tree is the
    server (``None`` for ``--inference-url``: its CPU is not measured)."""

    ts: dict
    client: object
    pid: int | None = None


def measure(args: argparse.Namespace, server: Server, photos: Photos, concurrency: int, mode: SendMode) -> dict:
    """One concurrency, one way of sending: hey (served) -> tag-folder (the real CLI, a process of its
    own; the server's CPU meanwhile) -> hey again."""
    n = args.requests or max(96, 24 * concurrency)
    url = f"{server.ts['inference_url']}/predictions/{MODEL_NAME}"
    work = args.work.resolve()
    sample = work / f"sample-{mode.name}.bin"  # the first photo as tagctl sends it this way
    sample.write_bytes(mode.upload.body(photos.sample.read_bytes()))
    token = server.client.keys.inference
    before = run_hey(url, sample, concurrency, token, requests=n).summary()
    out = work / f"run-c{concurrency}-{mode.name}"
    command = tagctl_command(server.ts) + ["tag-folder", str(photos.folder), "--out", f"{out}/", "--restart",
                                           "--concurrency", str(concurrency), "--quiet", *mode.flags]
    cpu_before = server_cpu_seconds(server.pid) if server.pid else None
    t0 = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    tag_s = time.monotonic() - t0
    cpu_s = server_cpu_seconds(server.pid) - cpu_before if server.pid else None
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise RuntimeError(f"tag-folder exited {result.returncode}")
    after = run_hey(url, sample, concurrency, token, requests=n).summary()
    served = (before["rps"] + after["rps"]) / 2
    count = len(photos.files)
    row = {"concurrency": concurrency, "send": mode.name, "bytes_per_photo": photos.bytes_sent[mode.name],
           "served_rps": served, "served_rps_runs": [before["rps"], after["rps"]],
           "hey_errors": before["errors"] + after["errors"], "tag_folder_s": tag_s,
           "tag_folder_rps": count / tag_s, "tag_folder_says": result.stdout.strip().splitlines()[-1:],
           "server_cpu_s_per_photo": cpu_s / count if cpu_s is not None else None, "labels": str(out / "labels.csv")}
    row["ratio"] = row["tag_folder_rps"] / served if served else 0.0
    if args.report:
        t0 = time.monotonic()
        subprocess.run(tagctl_command(server.ts) + ["report", str(out), "--quiet"], check=True, capture_output=True)
        row["report_s"] = time.monotonic() - t0
    return row


def compare_runs(rows: list[dict], server: Server, truth: Path | None) -> None:
    """Each row's tags against the ``original`` run at its concurrency, and its score against ``truth``."""
    from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, load_spec

    spec = load_spec(DEFAULT_SPEC_PATH)
    originals = {r["concurrency"]: r for r in rows if r["send"] == "original"}
    for row in rows:
        reference = originals.get(row["concurrency"])
        if reference is not None and reference is not row:
            row["agreement"] = tag_agreement(Path(row["labels"]), Path(reference["labels"]), spec)
        if truth is not None:
            scored = subprocess.run(tagctl_command(server.ts) + ["score", row["labels"], str(truth), "--json"],
                                    capture_output=True, text=True)
            if scored.returncode != 0:
                raise RuntimeError(f"tagctl score exited {scored.returncode}: {scored.stderr.strip()}")
            row["score"] = json.loads(scored.stdout)["score"]


def find_photos(args: argparse.Namespace, modes: list[SendMode]) -> Photos:
    """``--photos`` as they are, or the bench's generated ones; the bytes each way of sending sends."""
    if args.photos:
        folder = args.photos.resolve()
    else:
        folder = make_photos(args.work.resolve(), args.count, args.distinct, args.size, args.exif_fraction, args.jobs)
    files = list_photos(folder)
    if not files:
        raise ValueError(f"no photos under {folder}")
    photos = Photos(folder, files)
    for mode in modes:
        photos.bytes_sent[mode.name] = bytes_per_photo(files, mode.upload)
    return photos


def run_field_bench(args: argparse.Namespace, concurrencies: list[int], modes: list[SendMode]) -> tuple[Photos, list[dict]]:
    """The photos made (or found), a server started (or the given one), one row per concurrency and way of sending."""
    from lizaalert_tagger.client.http import TaggerClient

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = find_photos(args, modes)
    if args.sweep:
        from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, load_spec

        sample = photos.files[:: max(1, len(photos.files) // args.sweep)][: args.sweep]
        print_sweep(input_sweep(sample, load_spec(DEFAULT_SPEC_PATH)), len(sample),
                    sum(p.stat().st_size for p in sample) / len(sample))
    torchserve = None
    try:
        if args.inference_url:
            ts = {"inference_url": args.inference_url, "management_url": args.management_url or args.inference_url,
                  "key_file": args.key_file, "token": args.token}
            server = Server(ts, TaggerClient(args.inference_url, args.management_url, args.key_file, args.token))
        else:
            torchserve = TorchServe(run_dir=work / "torchserve", model_store=args.archive.parent,
                                    ports=(free_port(), free_port(), free_port()))
            torchserve.start(timeout=300)
            ts = {"inference_url": torchserve.inference_url, "management_url": torchserve.management_url,
                  "key_file": torchserve.key_file}
            server = Server(ts, TaggerClient(torchserve.inference_url, torchserve.management_url, torchserve.key_file),
                            torchserve.process.pid)
        for mode in modes:  # warm, each kind of body
            server.client.predict(mode.upload.body(photos.sample.read_bytes()))
        rows = [measure(args, server, photos, c, mode) for c in concurrencies for mode in modes]
        compare_runs(rows, server, args.truth)
        return photos, rows
    finally:
        if torchserve is not None:
            torchserve.stop()


def print_rows(args: argparse.Namespace, photos: Photos, rows: list[dict]) -> bool:
    """The table and the reduced copies against the originals; True when every ratio reaches ``--min-ratio``."""
    if args.photos:
        what = f"{len(photos.files)} photos of {photos.folder}"
    else:
        width, height = SIZES[args.size]
        what = f"{args.count} photos {args.size} ({width}x{height}, {args.distinct} distinct, EXIF {args.exif_fraction:.0%})"
    print(f"\nlizaalert-field-bench: {what} ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
          f"{available_cores()} cores, CPU: {cpu_model()})")
    print(f"{'conc':>4} {'send':>15} {'KB/photo':>9} {'hey img/s':>10} {'tag-folder img/s':>17} {'ratio':>6} {'target':>7}   "
          f"{'server CPU ms/photo':>19} {'tags = original':>16} {'score':>7}" + ("  report s" if args.report else ""))
    passed = True
    for r in rows:
        ok = r["ratio"] >= args.min_ratio
        passed &= ok
        cpu = r["server_cpu_s_per_photo"]
        same, total = r.get("agreement", (0, 0))
        print(f"{r['concurrency']:>4} {SendMode(r['send']).label:>15} {r['bytes_per_photo'] / 1e3:>9.0f} "
              f"{r['served_rps']:>10.2f} {r['tag_folder_rps']:>17.2f} {r['ratio']:>6.2f} "
              f"{'>= ' + format(args.min_ratio, '.2f'):>7} {'ok' if ok else 'BELOW':<5} "
              f"{format(1000 * cpu, '.1f') if cpu is not None else '-':>17} "
              f"{format(same / total, '.2%') if total else '-':>16} {format(r['score'], '.4f') if 'score' in r else '-':>7}"
              + (f"  {r['report_s']:8.1f}" if args.report else ""))
    originals = {r["concurrency"]: r for r in rows if r["send"] == "original"}
    for r in rows:
        reference = originals.get(r["concurrency"])
        if r["send"] == "original" or reference is None:
            continue
        parts = [f"bytes {r['bytes_per_photo'] / reference['bytes_per_photo']:.3f}",
                 f"tag-folder img/s {r['tag_folder_rps'] / reference['tag_folder_rps']:.2f}x"]
        if r["server_cpu_s_per_photo"] and reference["server_cpu_s_per_photo"]:
            parts.append(f"server CPU per photo {r['server_cpu_s_per_photo'] / reference['server_cpu_s_per_photo']:.3f} (<= 0.333)")
        if "agreement" in r:
            parts.append(f"tags agree {r['agreement'][0] / r['agreement'][1]:.2%} of {r['agreement'][1]} (>= 99.5 %)")
        if "score" in r and "score" in reference:
            parts.append(f"score {r['score'] - reference['score']:+.4f} (within 0.002)")
        print(f"  c={r['concurrency']} {SendMode(r['send']).label} vs original: " + "; ".join(parts))
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-field-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="photos in the folder (default: %(default)s)")
    parser.add_argument("--distinct", type=int, default=40,
                        help="different pictures among them, each made once (default: %(default)s)")
    parser.add_argument("--size", choices=sorted(SIZES), default="12mp", help="photo size (default: %(default)s)")
    parser.add_argument("--exif-fraction", type=float, default=0.5,
                        help="share of photos with EXIF time and GPS (default: %(default)s)")
    parser.add_argument("--photos", type=Path,
                        help="tag the photos of this folder as they are instead of generated ones (--count, --distinct, "
                             "--size and --exif-fraction then do nothing)")
    parser.add_argument("--truth", type=Path, help="labels of --photos (the seed's CSV): score each run with tagctl score")
    parser.add_argument("--send", default="1024,original",
                        help="ways of sending, comma-separated: a reduced copy's long side in px (tagctl --send-size), "
                             "'original' (--send-original) (default: %(default)s)")
    parser.add_argument("--sweep", type=int, default=0, metavar="N",
                        help="first compare the model's input from copies of several sizes and JPEG qualities with the "
                             "original's on N of the photos (no server) (default: none)")
    parser.add_argument("--concurrency", default="16", help="comma-separated concurrencies (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=0,
                        help="hey requests per load run (default: 24 x concurrency, at least 96, as lizaalert-bench)")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="archive to serve (default: %(default)s)")
    parser.add_argument("--inference-url", help="use this running server instead of starting one (its CPU is not measured)")
    parser.add_argument("--management-url", help="its management URL (with --inference-url)")
    parser.add_argument("--key-file", type=Path, help="its key_file.json (with --inference-url)")
    parser.add_argument("--token", help="its inference token (with --inference-url, instead of --key-file)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="photos and runs (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="processes making photos (default: %(default)s)")
    parser.add_argument("--report", action="store_true", help="also time `tagctl report` on the run")
    parser.add_argument("--min-ratio", type=float, default=0.8, help="exit 1 below this ratio (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        modes = [SendMode.parse(text) for text in args.send.split(",")]
    except ValueError as e:
        parser.error(f"--concurrency or --send: {e}")
    if args.count < 1 or args.distinct < 1 or min(concurrencies) < 1 or args.sweep < 0:
        parser.error("expected --count, --distinct and every --concurrency >= 1, --sweep >= 0")
    if args.photos and not args.photos.is_dir():
        parser.error(f"--photos {args.photos} is not a folder")
    if args.truth and not args.truth.is_file():
        parser.error(f"--truth {args.truth} does not exist")
    if not args.inference_url and not args.archive.exists():
        parser.error(f"{args.archive} does not exist: `make model` builds it, or give --archive/--inference-url")
    try:
        require_hey()
        photos, rows = run_field_bench(args, concurrencies, modes)
    except (HeyError, ClientError, OSError, RuntimeError, ValueError) as e:
        print(f"lizaalert-field-bench: {e}", file=sys.stderr)
        return 2
    passed = print_rows(args, photos, rows)
    work = args.work.resolve()
    (work / "field_bench.json").write_text(json.dumps({"args": vars(args) | {"work": str(work), "archive": str(args.archive),
                                                                                "key_file": str(args.key_file)},
                                                       "cpu": cpu_model(), "rows": rows}, indent=2, default=str))
    print(f"(raw figures: {work / 'field_bench.json'})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
