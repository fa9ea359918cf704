"""``maskloop video add | list`` and ``maskloop propagate``: sequences of a project from the
command line.

``video add PROJECT FILE...`` registers videos or folders of numbered frames (nothing is
unpacked); ``video list PROJECT`` lists them with their tracks. ``propagate PROJECT SEQUENCE``
follows the sequence's tracks from their anchors (the instances a person made) with the
classical backend (optical flow + GrabCut) or SAM2's video memory, writing every frame into
the project as it is computed (app/predict/track_propagation.py): an anchor is never
overwritten, and Ctrl+C stops after the frame under way, keeping every frame finished.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.errors import MaskLoopError, ProjectError
from app.core.jobs import CancelToken

if TYPE_CHECKING:
    from app.core.project import Project
    from app.core.types import SequenceRecord
    from app.predict.track_propagation import PropagationSummary

EXIT_CANCELLED = 130


# --- video add / list -----------------------------------------------------------------------


def cmd_video_add(args: argparse.Namespace) -> int:
    """Register each FILE; one that cannot be read is reported and the others still added
    (exit 1 then)."""
    from app.core.project import Project

    failed = 0
    with Project.open(args.project) as project:
        for name in args.files:
            try:
                rec = project.sequences.add(Path(name))
            except (MaskLoopError, OSError) as exc:
                print(f"maskloop video add: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(f"{rec.id}: {rec.path} ({rec.kind}, {rec.frame_count} frames, "
                  f"{rec.width} x {rec.height}, {rec.fps:g} fps)")
    return 1 if failed else 0


def cmd_video_list(args: argparse.Namespace) -> int:
    from app.core.project import Project

    with Project.open(args.project) as project:
        rows = [_listing(project, rec) for rec in project.sequences.all()]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no sequences: add one with 'maskloop video add PROJECT FILE'")
        return 0
    for row in rows:
        print(f"{row['id']}: {row['path']} ({row['kind']}, {row['frames']} frames, "
              f"{row['width']} x {row['height']}, {row['fps']:g} fps)")
        for t in row["tracks"]:
            print(f"    {t['name']!r} ({t['label']}): anchors on {len(t['anchors'])} "
                  f"frame(s), {t['propagated']} propagated")
    return 0


def _listing(project: Project, rec: SequenceRecord) -> dict[str, Any]:
    """One sequence as ``video list --json`` prints it."""
    assert rec.id is not None
    seqs = project.sequences
    anchors = seqs.anchors(rec.id)
    tracks = []
    for t in seqs.tracks(rec.id):
        assert t.id is not None
        stored = seqs.instances(rec.id, t.id)
        total = sum(len([i for i in insts if i.track_id == t.id]) for insts in stored.values())
        mine = sorted(anchors.get(t.id, {}))
        tracks.append({"id": t.id, "name": t.name, "label": t.label, "anchors": mine,
                       "propagated": total - len(mine)})
    return {"id": rec.id, "path": rec.path, "kind": rec.kind, "frames": rec.frame_count,
            "width": rec.width, "height": rec.height, "fps": rec.fps, "tracks": tracks}


# --- propagate ------------------------------------------------------------------------------


def find_sequence(project: Project, which: str) -> SequenceRecord:
    """A sequence by id, by its stored path, by its name (the file stem or folder name, when
    only one has it) or by a file path that names it."""
    seqs = project.sequences
    if which.isdigit():
        return seqs.get(int(which))
    rec = seqs.by_path(which)
    if rec is not None:
        return rec
    every = seqs.all()
    named = [r for r in every if Path(r.path).stem == which or Path(r.path).name == which]
    if len(named) == 1:
        return named[0]
    wanted = Path(which).resolve()
    for rec in every:
        if seqs.path_of(rec).resolve() == wanted:
            return rec
    raise ProjectError(f"{project.path}: no sequence {which!r} (see 'maskloop video list')")


def track_ids(project: Project, sequence_id: int, names: list[str] | None) -> list[int] | None:
    """The ids of the tracks named (None: all); ProjectError naming an unknown one."""
    if not names:
        return None
    by_name = {t.name: t.id for t in project.sequences.tracks(sequence_id)}
    missing = [n for n in names if n not in by_name]
    if missing:
        known = ", ".join(repr(n) for n in by_name) or "none"
        raise ProjectError(f"no track {missing[0]!r} in this sequence (tracks: {known})")
    return [int(by_name[n] or 0) for n in names]


@contextmanager
def cancel_on_interrupt(token: CancelToken) -> Iterator[None]:
    """The first Ctrl+C cancels ``token`` (the job stops after the frame under way and keeps
    what it finished); a second one interrupts at once."""
    if not _main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)

    def handler(_sig: int, _frame: object) -> None:
        token.cancel()
        print("\ncancelling after this frame (Ctrl+C again to stop at once)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _propagator(args: argparse.Namespace) -> tuple[Any, Any]:
    """(predictor, its propagator). SAM2's frame embeddings stay in memory: 8 MB a frame on
    disk is not worth it for frames nobody may ever click on."""
    from app.cli.backend import predictor_from_args
    from app.predict.base import SourceKind
    from app.predict.propagation import propagator_for

    cache = None
    if args.backend != "classical":
        from app.predict.cache.store import EmbeddingCache

        cache = EmbeddingCache(disk_dir=None)
    predictor = predictor_from_args(args, backend=args.backend, cache=cache)
    if predictor.capabilities.kind == SourceKind.SAM2:  # torch is loaded already then
        from app.predict.sam2.predictor import SAM2Predictor
        from app.predict.sam2.video import SAM2Propagator

        if isinstance(predictor, SAM2Predictor):
            return predictor, SAM2Propagator(predictor, cache_frames=False)
    return predictor, propagator_for(predictor)


def cmd_propagate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.core.project import Project
    from app.predict.track_propagation import propagate_tracks

    if args.count is not None and args.count < 1:
        raise ProjectError("--count must be at least 1")
    with Project.open(args.project) as project:
        rec = find_sequence(project, args.sequence)
        assert rec.id is not None
        tracks = track_ids(project, rec.id, args.tracks)
        start = args.start
        if start is None:
            start = rec.frame_count - 1 if args.backward else 0
        if not 0 <= start < rec.frame_count:  # before a model is loaded
            raise ProjectError(f"{rec.path}: frame {start} is out of range "
                               f"(0..{rec.frame_count - 1})")
        predictor, propagator = _propagator(args)
        direction = -1 if args.backward else 1
        token = CancelToken()
        with closing(predictor), tqdm(desc="propagating", unit="frame", file=sys.stderr,
                  disable=True if args.quiet else None, leave=False) as bar:

            def progress(done: int, total: int, message: str) -> None:
                if total and bar.total != total:
                    bar.total = total
                bar.n = done
                bar.set_postfix_str(message, refresh=False)
                bar.refresh()

            with cancel_on_interrupt(token):
                summary = propagate_tracks(project, propagator, rec.id, start=start,
                                           direction=direction, count=args.count,
                                           tracks=tracks, progress=progress, cancel=token)
        names = {t.id: t.name for t in project.sequences.tracks(rec.id)}
    print(describe(summary, names, rec.path))
    return EXIT_CANCELLED if summary.cancelled else 0


def describe(summary: PropagationSummary, names: dict[int | None, str], path: str) -> str:
    """The run's summary for people: per track the frames written, kept anchors, where it
    was lost or why it did not start."""
    verb = "cancelled: kept" if summary.cancelled else "propagated"
    frames = summary.frames_written
    lines = [f"{path}: {verb} {summary.masks_written} mask(s) on {len(frames)} frame(s)"
             + (f" ({frames[0]}..{frames[-1]})" if frames else "")]
    for track in sorted({*summary.written, *summary.kept, *summary.lost,
                         *summary.not_started}):
        name = names.get(track, str(track))
        if track in summary.not_started:
            lines.append(f"  {name!r}: not propagated: {summary.not_started[track]}")
            continue
        written = summary.written.get(track, [])
        line = f"  {name!r}: {len(written)} frame(s) written"
        if written:
            line += f" ({min(written)}..{max(written)})"
        kept = summary.kept.get(track, [])
        if kept:
            line += f", anchor(s) kept on {', '.join(map(str, kept))}"
        if track in summary.lost:
            line += f", lost at frame {summary.lost[track]}"
        lines.append(line)
    if summary.cleared:
        lines.append(f"  {summary.cleared} stale propagated instance(s) removed")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the video (add, list) and propagate subcommands."""
    video = subparsers.add_parser("video", help="add or list the videos of a project",
                                  description="Videos and folders of numbered frames in a "
                                  "project: their frames are decoded on demand, never "
                                  "unpacked.")
    actions = video.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add videos or frame folders",
                             description="Add video files (mp4, mov, avi, mkv, webm) or "
                             "folders of numbered frames to the project.")
    add.add_argument("project", metavar="PROJECT")
    add.add_argument("files", metavar="FILE", nargs="+", help="a video file or frame folder")
    add.set_defaults(func=cmd_video_add)
    listing = actions.add_parser("list", help="list the sequences and their tracks")
    listing.add_argument("project", metavar="PROJECT")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_video_list)

    prop = subparsers.add_parser(
        "propagate", help="follow a sequence's tracks from their anchors",
        description="Propagate the tracks of SEQUENCE from their anchors (the instances a "
        "person made) through the frames, writing each frame into the project as it is "
        "computed. Anchors are never overwritten: a track meeting a later anchor goes on "
        "from it. "
        "Ctrl+C stops after the frame under way and keeps every frame finished.")
    prop.add_argument("project", metavar="PROJECT")
    prop.add_argument("sequence", metavar="SEQUENCE",
                      help="the sequence: its id, its path in the project, or the file")
    prop.add_argument("--from", dest="start", metavar="N", type=int, default=None,
                      help="the frame to start from (default: the first, or with --backward "
                      "the last)")
    prop.add_argument("--backward", action="store_true", help="propagate towards frame 0")
    how_far = prop.add_mutually_exclusive_group()
    how_far.add_argument("--count", metavar="K", type=int, default=None,
                         help="propagate K frames after the start frame")
    how_far.add_argument("--to-end", action="store_true",
                         help="propagate to the end of the sequence (the default)")
    prop.add_argument("--tracks", metavar="NAME", nargs="+",
                      help="only these tracks (default: all of the sequence's)")
    prop.add_argument("--backend", choices=("classical", "sam2"), default=None,
                      help="classical: optical flow + GrabCut, no model; sam2: SAM2's video "
                      "memory (--model or --checkpoint); default: SAM2 when one is installed "
                      "or given, else classical")
    prop.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from app.cli.backend import add_model_args
    from app.cli.remote_backend import add_remote_args

    add_model_args(prop)
    add_remote_args(prop)  # --server URL: propagate on a MaskLoop server's model
    prop.set_defaults(func=cmd_propagate)
