"""The bridge between the prediction service (one worker thread owning the predictor) and
the GUI: requests go in as plain method calls, answers come back as Qt signals queued to the
GUI thread. Also the decoded-image store shared by the display and the encoder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.core.errors import ImageError
from app.core.jobs import CancelToken
from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt, Source
from app.predict.base import Capabilities, EverythingOptions, FindQuery, Predictor, SourceKind
from app.predict.service.service import PredictionService
from app.predict.service.types import Job, JobKind, Phase, ProgressEvent, ServiceCallbacks
from app.ui.encode_progress import EncodeProgress

FileVersion = tuple[int, int] | None  # (size, mtime in ns) of a file; None: it is missing


def file_version(path: Path) -> FileVersion:
    """What tells that a file changed (without reading it)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


IMAGE_STORE_BUDGET = 512 * 2**20
"""Bytes of decoded images that ``ImageStore`` keeps (14 photos of 12 megapixels); an image
larger than that alone (a 20000 x 20000 one is 1.2 GB) is kept alone while it is current."""


def _image_bytes(_key: str, image: np.ndarray) -> int:
    return int(image.nbytes)


class ImageStore:
    """Decoded RGB images by content hash, shared between threads: the first caller of
    ``get`` decodes, concurrent callers for the same image wait instead of decoding again.

    Bounded by bytes: the most recently used images within ``budget`` bytes, and always the
    current one (the last asked for): an image larger than the whole budget is then the
    only one kept, until another is asked for. So it never holds more than
    ``max(budget, the current image's bytes)``."""

    def __init__(self, budget: int = IMAGE_STORE_BUDGET,
                 loader: Callable[[Path], np.ndarray] | None = None) -> None:
        self.budget = int(budget)
        self._loader = loader
        self._lock = threading.Lock()
        self._images = BoundedCache[str, np.ndarray](self.budget, _image_bytes)
        self._oversized: tuple[str, np.ndarray] | None = None  # current, over the budget
        self._busy: dict[str, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the images held."""
        with self._lock:
            extra = self._oversized[1].nbytes if self._oversized is not None else 0
            return self._images.nbytes + int(extra)

    @property
    def count(self) -> int:
        """Images held (no ``__len__``: an empty store must stay truthy)."""
        with self._lock:
            return len(self._images) + (self._oversized is not None)

    def get(self, image_hash: str, path: Path) -> np.ndarray:
        """The decoded image (raises ImageError when the file cannot be read)."""
        return self.get_with(image_hash, lambda: self._load(path))

    def get_with(self, image_hash: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """``get`` for pixels that are not a file of their own (a sequence's frame):
        ``load()`` decodes them once, cached by ``image_hash`` like files."""
        with self._lock:
            image = self._held(image_hash)  # now the most recent
            if image is not None:
                return image
            key_lock = self._busy.setdefault(image_hash, threading.Lock())
        with key_lock:
            with self._lock:
                image = self._held(image_hash)
                if image is not None:
                    return image
            image = load()
            with self._lock:
                self._keep(image_hash, image)
                self._busy.pop(image_hash, None)
            return image

    def _held(self, image_hash: str) -> np.ndarray | None:
        """The image if held, made the current one (under the lock)."""
        if self._oversized is not None and self._oversized[0] == image_hash:
            return self._oversized[1]
        image = self._images.get(image_hash)
        if image is not None:
            self._oversized = None  # no longer current
        return image

    def _keep(self, image_hash: str, image: np.ndarray) -> None:
        """Keep a new image as the current one (under the lock)."""
        if self._images.put(image_hash, image):
            self._oversized = None
        else:  # alone over the budget: the one image kept
            self._images.clear()
            self._oversized = (image_hash, image)

    def _load(self, path: Path) -> np.ndarray:
        if self._loader is not None:
            return self._loader(path)
        from app.core.images import load_image

        return load_image(path)

    def loader(self, image_hash: str, path: Path) -> Callable[[], np.ndarray]:
        return lambda: self.get(image_hash, path)


class PredictorBridge(QObject):
    """Qt face of ``PredictionService``.

    Requests (GUI thread, return at once): ``set_image``, ``predict`` (returns its request
    id), ``segment_everything`` and ``find_all`` (return their request id; answered by
    ``proposals_ready`` or ``failed`` with kind "everything"), ``cancel_everything``,
    ``close``. What the backend is and can do is what the predictor declares
    (``capabilities``; ``supports_text``: it can ``find_all`` by text, e.g. Roboflow SAM3,
    Segmind; ``supports_exemplars``: by example regions, e.g. local SAM2, classical).
    Signals (delivered on the GUI thread when connected to QObject slots):
      embedding_ready(key, seconds), predicted(request_id, MaskResult, latency_ms),
      failed(kind, request_id, message) with kind "predict" | "embed" | "prefetch" |
      "everything" (request_id -1 for encodes), progress(ProgressEvent),
      proposals_ready(request_id, list[MaskProposal]).
    Stepped jobs (``run_steps``: propagation through a sequence) answer with
      step_done(request_id, item) after each step and steps_finished(request_id,
      error message or None, cancelled) once at the end.
    """

    embedding_ready = Signal(object, float)
    predicted = Signal(int, object, float)
    failed = Signal(str, int, str)
    progress = Signal(object)  # ProgressEvent
    proposals_ready = Signal(int, object)
    step_done = Signal(int, object)  # run_steps: (request id, the step's item)
    steps_finished = Signal(int, object, bool)  # (request id, error message | None, cancelled)
    # worker thread -> GUI thread: a failure and the image it was about (queued)
    _job_failed = Signal(str, int, str, object)

    def __init__(self, predictor: Predictor, images: ImageStore | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.predictor = predictor
        self.images = images or ImageStore()
        self._generation = 0
        self.current_hash: str | None = None
        # images that could not be read, by hash: the file's version then (not prefetched
        # again until it changes; written by the worker, read by the GUI thread)
        self._unreadable: dict[str, FileVersion] = {}
        self._unreadable_lock = threading.Lock()
        self._job_failed.connect(self._deliver_failure)
        served = EncodeProgress(predictor, self._encode_step,
                                lambda image_hash: image_hash == self.current_hash)
        self.service = PredictionService(served, ServiceCallbacks(
            on_embedding_ready=self._embedded,
            on_mask=self._mask,
            on_error=self._error,
            on_progress=self._progress,
            on_everything=self._everything,
        ))

    # -- the predictor (read each time: a stand-in predictor may be replaced while loading) --
    @property
    def description(self) -> str:
        return str(getattr(self.predictor, "description", self.predictor.model_id))

    @property
    def capabilities(self) -> Capabilities:
        """What the predictor declares it is and can do (a stand-in's while loading)."""
        return self.predictor.capabilities

    @property
    def is_classical(self) -> bool:
        return self.capabilities.kind is SourceKind.CLASSICAL

    @property
    def supports_text(self) -> bool:
        """The predictor can ``find_all`` by text."""
        return self.capabilities.text_prompts

    @property
    def supports_exemplars(self) -> bool:
        """The predictor can ``find_all`` like example regions ("find all like this")."""
        return self.capabilities.exemplar_prompts

    @property
    def source(self) -> Source:
        """Recorded on the instances this backend makes."""
        return self.capabilities.source

    @property
    def everything_grid(self) -> int:
        """Points per side for "segment everything": SAM's 32 on a GPU, 16 for SAM2 on a CPU,
        where a 32 x 32 grid of decodes takes minutes (16 x 16 about a quarter of that)."""
        caps = self.capabilities
        return 16 if caps.kind is SourceKind.SAM2 and caps.device == "cpu" else 32

    # -- requests --------------------------------------------------------------------------
    def set_image(self, image_hash: str, path: Path,
                  prefetch: Sequence[tuple[str, Path]] = ()) -> None:
        """Make this the current image: encode it now, then prefetch the others in order
        (leaving out those that could not be read, until their file changes)."""
        self.current_hash = image_hash
        self.service.set_current_image(
            image_hash, self._loader(image_hash, path),
            [(h, self._loader(h, p)) for h, p in prefetch if not self.known_unreadable(h, p)])

    def set_image_loader(self, image_hash: str, load: Callable[[], np.ndarray],
                         prefetch: Sequence[tuple[str, Callable[[], np.ndarray]]] = ()) -> None:
        """``set_image`` for pixels that are not a file (a sequence's frame:
        ``RecordPixels.load``): ``load`` runs on the worker, cached in ``images`` by hash."""
        self.current_hash = image_hash
        self.service.set_current_image(
            image_hash, self._cached(image_hash, load),
            [(h, self._cached(h, ld)) for h, ld in prefetch])

    def _cached(self, image_hash: str,
                load: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        return lambda: self.images.get_with(image_hash, load)

    def known_unreadable(self, image_hash: str, path: Path) -> bool:
        """Whether reading this image failed and its file has not changed since."""
        with self._unreadable_lock:
            if image_hash not in self._unreadable:
                return False
            if self._unreadable[image_hash] == file_version(path):
                return True
            del self._unreadable[image_hash]  # changed: worth another try
            return False

    def _loader(self, image_hash: str, path: Path) -> Callable[[], np.ndarray]:
        """Runs on the worker just before an encode. The worker keeps its normal priority
        (issue 14: at nice 10 it lost to every other program on a busy laptop)."""

        def load() -> np.ndarray:
            version = file_version(path)
            try:
                return self.images.get(image_hash, path)
            except (ImageError, OSError):
                with self._unreadable_lock:
                    self._unreadable[image_hash] = version
                raise

        return load

    def predict(self, prompt: Prompt) -> int:
        """Ask for the masks of ``prompt`` on the current image; returns the request id
        carried by ``predicted``/``failed``. Older unanswered requests are dropped."""
        self._generation += 1
        self.service.request_mask(prompt, self._generation, self.current_hash)
        return self._generation

    def segment_everything(self, options: EverythingOptions = EverythingOptions()) -> int:
        self._generation += 1
        self.service.segment_everything(self._generation, options)
        return self._generation

    def find_all(self, query: FindQuery) -> int:
        """What ``query`` asks for in the current image (texts where ``supports_text``,
        exemplars where ``supports_exemplars``); the answer comes like segment
        everything's."""
        self._generation += 1
        self.service.find_all(self._generation, query)
        return self._generation

    def find_all_in(self, image_hash: str, path: Path, query: FindQuery) -> int:
        """What ``query`` asks for in another image of the folder (loaded and encoded on the
        worker after the current image's requests); answered like ``find_all``, with the
        request id returned here."""
        self._generation += 1
        self.service.find_all_in(self._generation, image_hash,
                                 self._loader(image_hash, path), query)
        return self._generation

    def run_steps(self, make: Callable[[Predictor], Iterator[object]]) -> tuple[int, CancelToken]:
        """Start a stepped job on the worker (``PredictionService.run_steps``: clicks get in
        between its steps); returns its request id, carried by ``step_done`` and
        ``steps_finished``, and the token that cancels it (the steps done are kept)."""
        self._generation += 1
        token = self.service.run_steps(self._generation, lambda _served: make(self._real()),
                                       on_step=self._step_done, on_done=self._steps_finished)
        return self._generation, token

    def _real(self) -> Predictor:
        """(worker) The predictor itself, not the service's ``EncodeProgress`` wrapper nor a
        stand-in still loading (waits for it; raises Cancelled if the app closes first):
        propagation needs the backend's own class (``propagator_for``)."""
        wait = getattr(self.predictor, "wait_loaded", None)
        real: Predictor = wait(None) if callable(wait) else self.predictor
        return real

    def cancel_find_in(self) -> None:
        """Drop the ``find_all_in`` requests not answered yet."""
        self.service.cancel_find_in()

    def cancel_everything(self) -> None:
        self.service.cancel_everything()

    def cancel_all(self) -> None:
        """Drop every queued request and cancel the running job (the window closed)."""
        self.current_hash = None
        self.service.cancel_all()

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the worker (cancelling its job) and close the predictor; True if the worker
        stopped within ``timeout`` s (else it is a daemon thread that ends on its own after
        its uninterruptible step, closing the predictor then)."""
        return self.service.shutdown(timeout, close_predictor=True)

    # -- callbacks (worker thread): re-emit as signals ---------------------------------------
    def _embedded(self, key: EmbeddingKey, seconds: float) -> None:
        self.embedding_ready.emit(key, float(seconds))

    def _mask(self, result: MaskResult, prompt: Prompt, generation: int,
              latency_ms: float) -> None:
        self.predicted.emit(int(generation), result, float(latency_ms))

    def _error(self, exc: BaseException, job: Job) -> None:
        # find all is answered like segment everything, its failures too
        kind = JobKind.EVERYTHING.value if job.kind is JobKind.FIND_ALL else job.kind.value
        gen = job.generation if job.generation is not None else -1
        self._job_failed.emit(kind, int(gen), str(exc) or type(exc).__name__, job.image_hash)

    def _deliver_failure(self, kind: str, generation: int, message: str,
                         image_hash: str | None) -> None:
        """(GUI thread) Pass a failure on, unless it is an encode of an image that is no
        longer shown: its message would land on the next image."""
        if kind == JobKind.EMBED.value and image_hash is not None \
                and image_hash != self.current_hash:
            return
        self.failed.emit(kind, generation, message)

    def _encode_step(self, done: int, total: int) -> None:
        """(worker thread) The current image's encoder is at step ``done`` of ``total`` (a
        predictor that encodes in one call but tells its steps; the service tells those of
        a resumable encode itself)."""
        self.progress.emit(ProgressEvent(Phase.ENCODING, int(done), int(total),
                                         self.current_hash))

    def _progress(self, event: ProgressEvent) -> None:
        self.progress.emit(event)

    def _everything(self, proposals: list[MaskProposal], generation: int) -> None:
        self.proposals_ready.emit(int(generation), proposals)

    def _step_done(self, generation: int, item: object) -> None:
        self.step_done.emit(int(generation), item)

    def _steps_finished(self, generation: int, error: BaseException | None,
                        cancelled: bool) -> None:
        message = None if error is None else (str(error) or type(error).__name__)
        self.steps_finished.emit(int(generation), message, bool(cancelled))
