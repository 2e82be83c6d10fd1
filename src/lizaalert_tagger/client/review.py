"""Reviewers' corrections merged into the run folder (``tagctl review-merge RUN_DIR A.csv B.csv ...``).

Each reviewer corrects the tags in the offline report and exports ``reviewed.csv`` (the seed's CSV:
``;``, Russian header, codes; only the photos they reviewed). ``review_merge`` merges such exports
into ``RUN_DIR/reviewed.csv``:

- a photo in one export, or in several with the same answer, is merged (once);
- a photo with different answers is a *conflict*: it is left out of the merged file and listed, on
  stderr and in ``RUN_DIR/review-conflicts.csv`` (one row per distinct answer, with the exports giving
  it), never resolved by a rule. ``--decided FILE`` (a coordinator's export) settles photos: its
  rows win over every export's;
- rows the reader cannot use, and photos that are not in the run's ``details.csv``, are listed and
  left out too.

The merged file is the merge of the files given, nothing else: it replaces an older
``RUN_DIR/reviewed.csv`` (name that one among the exports to keep it). The exit status is 0 when
every reviewed row is in the merged file, :data:`EXIT_LEFT_OUT` (3) when some were left out
(conflicts, bad rows, photos of another run) — so a script notices — and 1 (as every tagctl error)
when nothing was written. No torch: this is client-side (``tagctl``).
"""
from __future__ import annotations

import csv
import io
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lizaalert_tagger.client.run_folder import (
    DELIMITER,
    DETAILS_CSV,
    RunFilesError,
    read_details,
    write_labels_atomically,
    write_text_atomically,
)
from lizaalert_tagger.common.labels_csv import LabelsTable, header_row, read_labels
from lizaalert_tagger.common.spec import AttributeSpec

REVIEWED_CSV = "reviewed.csv"
CONFLICTS_CSV = "review-conflicts.csv"
EXIT_LEFT_OUT = 3

Codes = dict[str, int]


@dataclass
class Conflict:
    """One photo with different answers: each distinct answer and the exports that gave it."""

    photo: str
    answers: list[tuple[Codes, list[str]]]

    def differing(self, spec: AttributeSpec) -> list[str]:
        """The attributes on which the answers differ, in the spec's order."""
        return [a.key for a in spec.attributes if len({codes[a.key] for codes, _ in self.answers}) > 1]

    def describe(self, spec: AttributeSpec) -> str:
        """``car: 1 in a.csv, 0 in b.csv; season: ...``"""
        parts = []
        for key in self.differing(spec):
            given = ", ".join(f"{codes[key]} in {' and '.join(sources)}" for codes, sources in self.answers)
            parts.append(f"{key}: {given}")
        return "; ".join(parts)


@dataclass
class Merge:
    """What ``merge_exports`` made of the exports: the merged rows and everything left out."""

    merged: dict[str, Codes] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    duplicates: int = 0  # rows that repeated another export's answer and merged with it
    decided: int = 0  # photos whose answer came from --decided
    not_in_run: dict[str, list[str]] = field(default_factory=dict)  # photo -> the exports naming it
    bad_rows: list[str] = field(default_factory=list)  # "a.csv: line 3: reason"

    @property
    def left_out(self) -> int:
        return len(self.conflicts) + len(self.not_in_run) + len(self.bad_rows)


def merge_exports(exports: Sequence[LabelsTable], run_photos: Collection[str],
                  decided: LabelsTable | None = None) -> Merge:
    """Merge reviewers' exports (read by ``read_labels``): agreeing answers merge, different ones are
    conflicts (left out), photos not in ``run_photos`` are left out; ``decided``'s rows win."""
    result = Merge()
    answers: dict[str, list[tuple[Codes, list[str]]]] = {}
    for table in exports:
        result.bad_rows += [f"{table.path}: {p}" for p in table.problems]
        for row in table.rows:
            if row.filename not in run_photos:
                result.not_in_run.setdefault(row.filename, []).append(str(table.path))
                continue
            given = answers.setdefault(row.filename, [])
            same = next((sources for codes, sources in given if codes == row.labels), None)
            if same is not None:
                same.append(str(table.path))
                result.duplicates += 1
            else:
                given.append((dict(row.labels), [str(table.path)]))
    if decided is not None:
        result.bad_rows += [f"{decided.path}: {p}" for p in decided.problems]
        for row in decided.rows:
            if row.filename not in run_photos:
                result.not_in_run.setdefault(row.filename, []).append(str(decided.path))
            else:
                answers[row.filename] = [(dict(row.labels), [str(decided.path)])]
                result.decided += 1
    for photo in sorted(answers):
        if len(answers[photo]) == 1:
            result.merged[photo] = answers[photo][0][0]
        else:
            result.conflicts.append(Conflict(photo, answers[photo]))
    return result


def conflicts_text(conflicts: Sequence[Conflict], spec: AttributeSpec) -> str:
    """``review-conflicts.csv``: the seed's columns after ``filename;differs;exports``, one row per
    distinct answer of each conflicting photo."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITER, lineterminator="\n")
    header = header_row(spec)
    writer.writerow([header[0], "differs", "exports", *header[1:]])
    for conflict in conflicts:
        differs = ", ".join(conflict.differing(spec))
        for codes, sources in conflict.answers:
            writer.writerow([conflict.photo, differs, ", ".join(sources), *(codes[a.key] for a in spec.attributes)])
    return out.getvalue()


def _report(result: Merge, spec: AttributeSpec, reviewed: Path, conflicts: Path, exports: int,
            out: TextIO, err: TextIO) -> None:
    """What was left out on ``err`` (one line each), the summary on ``out``."""
    for problem in result.bad_rows:
        print(f"tagctl: review-merge: left out {problem}", file=err)
    for photo, sources in sorted(result.not_in_run.items()):
        print(f"tagctl: review-merge: left out {photo} (in {', '.join(sources)}): not a photo of this run", file=err)
    for conflict in result.conflicts:
        print(f"tagctl: review-merge: conflict, left out {conflict.photo}: {conflict.describe(spec)}", file=err)
    summary = f"{reviewed}: {len(result.merged)} photos from {exports} exports"
    details = [f"{result.duplicates} agreeing duplicates merged"] if result.duplicates else []
    details += [f"{result.decided} decided by --decided"] if result.decided else []
    if details:
        summary += f" ({', '.join(details)})"
    if result.left_out:
        summary += (f"; left out: {len(result.conflicts)} conflicts (listed in {conflicts}), "
                    f"{len(result.bad_rows)} unusable rows, {len(result.not_in_run)} photos not in the run")
    print(summary, file=out)


def review_merge(run_dir: Path, exports: Sequence[Path], spec: AttributeSpec, decided: Path | None = None,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Merge ``exports`` (and ``decided``) into ``run_dir/reviewed.csv``; 0, or :data:`EXIT_LEFT_OUT`
    when conflicts, unusable rows or photos of another run were left out (listed on ``err``).

    Raises :class:`RunFilesError` when ``run_dir`` is not a run folder, ``LabelsFormatError`` when an
    export is not a labels CSV (nothing is written then)."""
    out, err = out or sys.stdout, err or sys.stderr
    details = Path(run_dir) / DETAILS_CSV
    if not details.is_file():
        raise RunFilesError(f"no {DETAILS_CSV} in {run_dir}: expected the --out folder of `tagctl tag-folder`")
    records, _ = read_details(details, spec)
    tables = [read_labels(path, spec) for path in exports]
    result = merge_exports(tables, records, read_labels(decided, spec) if decided is not None else None)
    reviewed, conflicts = Path(run_dir) / REVIEWED_CSV, Path(run_dir) / CONFLICTS_CSV
    write_labels_atomically(reviewed, result.merged, spec)
    if result.conflicts:
        write_text_atomically(conflicts, conflicts_text(result.conflicts, spec))
    else:
        conflicts.unlink(missing_ok=True)  # an old list would describe conflicts that are gone
    _report(result, spec, reviewed, conflicts, len(exports), out, err)
    return EXIT_LEFT_OUT if result.left_out else 0
