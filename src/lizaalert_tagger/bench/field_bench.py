"""Field throughput: ``tagctl tag-folder DIR --out RUN/`` against what the server itself serves.

The target: tagging a folder runs at >= 80% of the served throughput that ``lizaalert-bench``
measures at the same concurrency (hey loading one photo over and over), for 1,000 generated 12-MP
photos. This measures both on one TorchServe, one after the other:

1. ``--count`` 12-MP photos (``bench.bench_photo``: a generated scene with sensor noise, JPEG q90,
   ~2.5 MB) in 10 sub-folders, ``--exif-fraction`` of them with EXIF time and GPS; ``--distinct``
   different pictures are made (seconds each) and repeated with their own EXIF. Kept in
   ``--work`` between runs;
2. TorchServe from ``--archive`` with the project's config (as ``lizaalert-bench``), or the server
   given by ``--inference-url``/``--key-file``;
3. per concurrency: hey (served) -> tag-folder ``--out RUN/ --restart`` (the real CLI, a separate
   process, its wall time from start to exit) -> hey again; ratio = tag-folder / mean of the two hey runs;
4. with ``--report``, the time of ``tagctl report`` too (thumbnails in parallel, draft mode).

    lizaalert-field-bench                                          # 1,000 photos, c=16 (10-30 min on 2 cores)
    lizaalert-field-bench --count 48 --concurrency 4 --distinct 4  # a quick look

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
from multiprocessing import get_context
from pathlib import Path

from lizaalert_tagger.bench.bench import SIZES, bench_photo
from lizaalert_tagger.bench.hey import HeyError, require_hey, run_hey
from lizaalert_tagger.client.http import MODEL_NAME, ClientError
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


def measure(args: argparse.Namespace, ts: dict, client, folder: Path, sample: Path, concurrency: int) -> dict:
    """One concurrency: hey (served) -> tag-folder (the real CLI, a process of its own) -> hey again."""
    n = args.requests or max(96, 24 * concurrency)
    url = f"{ts['inference_url']}/predictions/{MODEL_NAME}"
    before = run_hey(url, sample, concurrency, client.keys.inference, requests=n).summary()
    out = args.work.resolve() / f"run-c{concurrency}"
    command = tagctl_command(ts) + ["tag-folder", str(folder), "--out", f"{out}/", "--restart",
                                    "--concurrency", str(concurrency), "--quiet"]
    t0 = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    tag_s = time.monotonic() - t0
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise RuntimeError(f"tag-folder exited {result.returncode}")
    after = run_hey(url, sample, concurrency, client.keys.inference, requests=n).summary()
    served = (before["rps"] + after["rps"]) / 2
    row = {"concurrency": concurrency, "served_rps": served, "served_rps_runs": [before["rps"], after["rps"]],
           "hey_errors": before["errors"] + after["errors"], "tag_folder_s": tag_s,
           "tag_folder_rps": args.count / tag_s, "tag_folder_says": result.stdout.strip().splitlines()[-1:]}
    row["ratio"] = row["tag_folder_rps"] / served if served else 0.0
    if args.report:
        t0 = time.monotonic()
        subprocess.run(tagctl_command(ts) + ["report", str(out), "--quiet"], check=True, capture_output=True)
        row["report_s"] = time.monotonic() - t0
    return row


def run_field_bench(args: argparse.Namespace, concurrencies: list[int]) -> list[dict]:
    """The photos made (or reused), a server started (or the given one), one row per concurrency."""
    from lizaalert_tagger.client.http import TaggerClient

    work = args.work.resolve()
    folder = make_photos(work, args.count, args.distinct, args.size, args.exif_fraction, args.jobs)
    sample = next(folder.rglob("IMG_00000.jpg"))
    server = None
    try:
        if args.inference_url:
            ts = {"inference_url": args.inference_url, "management_url": args.management_url or args.inference_url,
                  "key_file": args.key_file, "token": args.token}
            client = TaggerClient(args.inference_url, args.management_url, args.key_file, args.token)
        else:
            server = TorchServe(run_dir=work / "torchserve", model_store=args.archive.parent,
                                ports=(free_port(), free_port(), free_port()))
            server.start(timeout=300)
            ts = {"inference_url": server.inference_url, "management_url": server.management_url, "key_file": server.key_file}
            client = TaggerClient(server.inference_url, server.management_url, server.key_file)
        client.predict(sample.read_bytes())  # warm
        return [measure(args, ts, client, folder, sample, c) for c in concurrencies]
    finally:
        if server is not None:
            server.stop()


def print_rows(args: argparse.Namespace, rows: list[dict]) -> bool:
    """The table; True when every ratio reaches ``--min-ratio``."""
    width, height = SIZES[args.size]
    print(f"\nlizaalert-field-bench: {args.count} photos {args.size} ({width}x{height}, "
          f"{args.distinct} distinct, EXIF {args.exif_fraction:.0%}) ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"{platform.node()}, {available_cores()} cores, CPU: {cpu_model()})")
    print(f"{'conc':>4} {'hey img/s':>10} {'tag-folder img/s':>17} {'ratio':>6} {'target':>7}" + ("  report s" if args.report else ""))
    passed = True
    for r in rows:
        ok = r["ratio"] >= args.min_ratio
        passed &= ok
        print(f"{r['concurrency']:>4} {r['served_rps']:>10.2f} {r['tag_folder_rps']:>17.2f} {r['ratio']:>6.2f} "
              f"{'>= ' + format(args.min_ratio, '.2f'):>7} {'ok' if ok else 'BELOW'}"
              + (f"  {r['report_s']:8.1f}" if args.report else ""))
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
    parser.add_argument("--concurrency", default="16", help="comma-separated concurrencies (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=0,
                        help="hey requests per load run (default: 24 x concurrency, at least 96, as lizaalert-bench)")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="archive to serve (default: %(default)s)")
    parser.add_argument("--inference-url", help="use this running server instead of starting one")
    parser.add_argument("--management-url", help="its management URL (with --inference-url)")
    parser.add_argument("--key-file", type=Path, help="its key_file.json (with --inference-url)")
    parser.add_argument("--token", help="its inference token (with --inference-url, instead of --key-file)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="photos and runs (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="processes making photos (default: %(default)s)")
    parser.add_argument("--report", action="store_true", help="also time `tagctl report` on the run")
    parser.add_argument("--min-ratio", type=float, default=0.8, help="exit 1 below this ratio (default: %(default)s)")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.count < 1 or args.distinct < 1 or min(concurrencies) < 1:
        parser.error("expected --count, --distinct and every --concurrency >= 1")
    if not args.inference_url and not args.archive.exists():
        parser.error(f"{args.archive} does not exist: `make model` builds it, or give --archive/--inference-url")
    try:
        require_hey()
        rows = run_field_bench(args, concurrencies)
    except (HeyError, ClientError, OSError, RuntimeError, ValueError) as e:
        print(f"lizaalert-field-bench: {e}", file=sys.stderr)
        return 2
    passed = print_rows(args, rows)
    work = args.work.resolve()
    (work / "field_bench.json").write_text(json.dumps({"args": vars(args) | {"work": str(work), "archive": str(args.archive),
                                                                                "key_file": str(args.key_file)},
                                                       "rows": rows}, indent=2, default=str))
    print(f"(raw figures: {work / 'field_bench.json'})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
