"""RemotePropagator: propagation on a real MaskLoop server on 127.0.0.1 (the classical
backend: GrabCut is deterministic, so the remote masks equal the local ones exactly), through
the Propagator interface, ``propagate_tracks`` and ``maskloop propagate --server``: frames
uploaded once and only as the run reaches them, uploaded again when the server lost them, a
cancel stopping the server's run within the look-ahead."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core.geometry import geometry_to_mask
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.types import Box, Prompt, Source
from app.predict.base import PredictorError
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.classical.propagate import ClassicalPropagator
from app.predict.propagation import FrameResult, PropagationRequest, propagator_for
from app.predict.remote.predictor import RemotePredictor
from app.predict.remote.propagation import RemotePropagator
from app.predict.track_propagation import propagate_tracks
from app.server.app import RunningServer, create_app, start_in_thread
from app.server.frames import FrameStore
from app.server.settings import ServerSettings

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS / "predict" / "classical"))
sys.path.insert(0, str(TESTS / "predict"))
from test_propagate import disc_sequence, two_disc_sequence  # noqa: E402
from test_track_propagation import H, W, ids  # noqa: E402
from test_track_propagation import project as project  # noqa: E402 (a fixture)

KEY = "propagation-key"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    srv = start_in_thread(create_app(ClassicalPredictor(), ServerSettings(api_key=KEY)))
    yield srv
    srv.stop()


@pytest.fixture
def remote(server: RunningServer) -> Iterator[RemotePredictor]:
    predictor = RemotePredictor(server.url, KEY)
    yield predictor
    predictor.close()


def _stats(server: RunningServer):  # noqa: ANN202 (the server's PropagationStats)
    return server.server.config.app.state.maskloop.runs.stats


def _same(remote: list[FrameResult], local: list[FrameResult]) -> None:
    assert [r.frame for r in remote] == [r.frame for r in local]
    for got, want in zip(remote, local, strict=True):
        assert got.masks.keys() == want.masks.keys()
        for t in want.masks:
            assert np.array_equal(got.masks[t], want.masks[t]), (got.frame, t)
        assert got.lost == want.lost


def test_remote_runs_equal_the_local_ones(remote: RemotePredictor) -> None:
    seq, a, b = two_disc_sequence()
    propagator = propagator_for(remote)
    assert isinstance(propagator, RemotePropagator) and propagator.capabilities.video
    there = propagator.open(seq)
    here = ClassicalPropagator().open(seq)
    for session in (there, here):
        session.add_mask(0, 1, a[0])
        session.add_mask(0, 2, b[0])
    seen: list[int] = []
    run = there.propagate(PropagationRequest(0), sink=lambda r: seen.append(r.frame)).wait()
    assert run.stopped == "end" and seen == list(range(8))
    _same(run.results, here.propagate(PropagationRequest(0)).wait().results)
    back = PropagationRequest(7, direction=-1, count=3, tracks=(2,))
    _same(there.propagate(back).wait().results, here.propagate(back).wait().results)
    assert there.uploaded == 8  # each frame once, for both runs
    there.close()


def test_frames_go_up_once_and_again_when_the_server_lost_them(
        server: RunningServer, remote: RemotePredictor) -> None:
    seq, a = disc_sequence(6)
    first = RemotePropagator(remote).open(seq)
    first.add_mask(0, 1, a[0])
    expected = first.propagate(PropagationRequest(0)).wait().results
    assert first.uploaded == 6
    again = RemotePropagator(remote).open(seq)  # a new session: the server has the files
    again.add_mask(0, 1, a[0])
    _same(again.propagate(PropagationRequest(0)).wait().results, expected)
    assert again.uploaded == 0
    # the server forgets every file (a restart, or evicted): 409, upload, send again
    server.server.config.app.state.maskloop.frames = FrameStore(1 << 30)
    third = RemotePropagator(remote).open(seq)
    third.add_mask(0, 1, a[0])
    _same(third.propagate(PropagationRequest(0)).wait().results, expected)
    assert third.uploaded == 6


def test_a_cancel_stops_the_server_within_the_look_ahead(server: RunningServer,
                                                         remote: RemotePredictor) -> None:
    seq, a = disc_sequence(40)
    session = RemotePropagator(remote, lookahead=2).open(seq)
    session.add_mask(0, 1, a[0])
    token = CancelToken()
    run = session.propagate(PropagationRequest(0), cancel=token)
    for result in run:
        if result.frame == 3:
            token.cancel()
    assert run.stopped == "cancelled" and run.frames_done == [0, 1, 2, 3]
    session.close()
    stats = _stats(server)
    deadline = time.monotonic() + 30  # waits for the server's side; no timing asserted
    while stats.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats.running == 0 and stats.cancelled == 1
    # the server was never sent more than 2 frames past the last result read
    assert stats.last_run_frames <= 4 + 2
    assert session.uploaded <= 4 + 2


def test_a_prompt_anchor_and_errors(remote: RemotePredictor) -> None:
    seq, a = disc_sequence(4)
    session = RemotePropagator(remote).open(seq)
    ys, xs = np.nonzero(a[0])
    box = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    mask = session.add_prompt(0, 5, Prompt(box=box))
    assert mask.shape == (H, W) or mask.shape == a[0].shape
    assert (mask & a[0]).sum() > 0.5 * a[0].sum()
    run = session.propagate(PropagationRequest(0)).wait()
    assert run.frames_done == [0, 1, 2, 3] and all(5 in r.masks for r in run.results)
    with pytest.raises(PredictorError, match="track 9 has no anchor"):
        session.propagate(PropagationRequest(0, tracks=(9,)))
    with pytest.raises(PredictorError, match="mask is"):
        session.add_mask(1, 5, np.zeros((3, 3), bool))


def test_a_server_without_video_is_refused(remote: RemotePredictor) -> None:
    remote.info = {**remote.info, "propagate": False}
    assert not remote.capabilities.video
    with pytest.raises(PredictorError, match="cannot propagate"):
        propagator_for(remote)


def test_maskloop_propagate_on_a_server_writes_the_local_masks(
        project: Project, server: RunningServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    seq, tracks = ids(project)
    path = project.path
    project.close()
    local_path = tmp_path / "local.maskloop"
    shutil.copy(path, local_path)
    monkeypatch.setenv("MASKLOOP_API_KEY", KEY)
    code = main(["propagate", str(path), str(seq), "--server", server.url, "-q"])
    assert code == 0
    with Project.open(path) as there, Project.open(local_path) as here:
        propagate_tracks(here, ClassicalPropagator(), seq, start=0)
        for track in tracks.values():
            got = there.sequences.instances(seq, track)
            want = here.sequences.instances(seq, track)
            assert sorted(got) == sorted(want) and len(got) > 1
            for frame in want:
                (g,), (w,) = got[frame], want[frame]
                assert np.array_equal(geometry_to_mask(g.geometry, H, W),
                                      geometry_to_mask(w.geometry, H, W)), (track, frame)
                assert g.origin == w.origin
                assert frame == 0 or g.source == Source.REMOTE
