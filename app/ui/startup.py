"""Showing the window before a slow predictor exists.

Building a SAM2 predictor imports torch and loads a checkpoint (3-7 s). The app does not
wait for it: the window opens with a ``LoadingPredictor`` stand-in ("Loading SAM2 tiny…" in
the status bar) while the real predictor is built on a background thread (the way the
settings dialog switches backend) and handed in when ready. Meanwhile the image is shown,
panning, zooming, manual drawing and editing work, and the prediction worker treats the
stand-in like a slow encoder: the current image is encoded as soon as the model is there,
and a SAM click made before is queued and answered then, exactly like a click made before an
embedding is ready. A predictor that fails to build is replaced by the fallback (the
classical backend) and the reason is shown; the annotations are never touched.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core.errors import Cancelled
from app.core.jobs import CancelToken, Progress, check
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import Capabilities, EverythingOptions, FindQuery, Predictor, SourceKind

if TYPE_CHECKING:
    import numpy as np

    from app.ui.app import Launcher

POLL_S = 0.05  # how often a waiting job looks at its cancel token


@dataclass(frozen=True)
class StartupBuild:
    """A predictor to build after the window is shown. ``name`` is what is loading (e.g.
    "SAM2 tiny"); ``build`` makes it (slow; raises on a bad checkpoint); ``fallback`` makes
    the predictor used when ``build`` fails (fast: the classical backend)."""

    name: str
    build: Callable[[], Predictor]
    fallback: Callable[[], Predictor]


@dataclass(frozen=True)
class Loaded:
    """What a background build produced: the predictor, and the error when it is the
    fallback."""

    predictor: Predictor
    error: BaseException | None = None


def build_or_fallback(build: StartupBuild) -> Loaded:
    """Run ``build.build``; on any error run ``build.fallback`` instead (background thread)."""
    try:
        return Loaded(build.build())
    except Exception as exc:  # noqa: BLE001 - any failure to load falls back, with its reason
        return Loaded(build.fallback(), exc)


class LoadingPredictor:
    """A Predictor standing in for one being built: every call waits (cancellably) until
    ``attach`` hands in the real predictor, then goes to it. Thread-safe. Its capabilities
    are ``expected`` until then (the startup build is a local SAM2 on a device not yet
    chosen), the real predictor's after."""

    def __init__(self, name: str, expected: Capabilities | None = None) -> None:
        self.name = name
        self.expected = expected or Capabilities(SourceKind.SAM2, device="unknown")
        self.loaded: Predictor | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def model_id(self) -> str:
        return self.loaded.model_id if self.loaded is not None else "loading"

    @property
    def description(self) -> str:
        if self.loaded is not None:
            return str(getattr(self.loaded, "description", self.loaded.model_id))
        return f"Loading {self.name}…"

    @property
    def capabilities(self) -> Capabilities:
        loaded = self.loaded
        return loaded.capabilities if loaded is not None else self.expected

    def attach(self, predictor: Predictor) -> bool:
        """Hand in the real predictor; False (and it is closed) when this one was closed."""
        with self._lock:
            if not self._closed:
                self.loaded = predictor
                self._ready.set()
                return True
        predictor.close()
        return False

    def wait_loaded(self, cancel: CancelToken | None) -> Predictor:
        """The real predictor, once it is there (cancellable)."""
        return self._wait(cancel)

    def _wait(self, cancel: CancelToken | None) -> Predictor:
        while not self._ready.wait(POLL_S):
            check(cancel)
            if self._closed:
                raise Cancelled("the app closed before the model was loaded")
        assert self.loaded is not None
        return self.loaded

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        return self._wait(cancel).embed(image, image_hash=image_hash, cancel=cancel)

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        return self._wait(None).predict(key, prompt)

    def start_embed(self, image: np.ndarray, image_hash: str | None = None) -> Any:
        """The loaded predictor's resumable encode (asked only once its capabilities,
        then the loaded predictor's, say ``resumable_encode``)."""
        return self._wait(None).start_embed(image, image_hash)  # type: ignore[attr-defined]

    def prepare(self, key: EmbeddingKey) -> None:
        """The loaded predictor's ``prepare``, where it has one."""
        prepare = getattr(self._wait(None), "prepare", None)
        if callable(prepare):
            prepare(key)

    def set_threads(self, n: int) -> None:
        """The loaded predictor's thread count (asked only where it has ``thread_control``)."""
        self._wait(None).set_threads(n)  # type: ignore[attr-defined]

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        return self._wait(cancel).segment_everything(image, options, cancel=cancel,
                                                     progress=progress)

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        return self._wait(cancel).find_all(image, query, cancel=cancel, progress=progress)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loaded = self.loaded
        if loaded is not None:
            loaded.close()


def load_in_background(launcher: Launcher, loading: LoadingPredictor,
                       build: StartupBuild) -> None:
    """Build ``build``'s predictor off the GUI thread and hand it to ``loading`` (the
    predictor of ``launcher.bridge``); then say so in the window's status bar."""

    def done(result: Loaded) -> None:
        if not loading.attach(result.predictor) or launcher.bridge.predictor is not loading:
            return  # the app closed (or switched backend) meanwhile
        note = f"{loading.description} ready"
        if result.error is not None:
            note = (f"Could not load {build.name}: {result.error} — using "
                    f"{loading.description} instead")
            print(f"maskloop: {note}", file=sys.stderr)
        launcher.backend_loaded(note, failed=result.error is not None)

    def crashed(exc: BaseException) -> None:  # even the fallback failed
        launcher.backend_loaded(f"Could not load {build.name}: {exc}", failed=True)

    launcher.tasks.start_detached(build_or_fallback, build, on_result=done, on_error=crashed)
