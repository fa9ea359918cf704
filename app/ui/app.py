"""Starting the desktop app: the QApplication, the predictor bridge, and the window of the
project being opened (opening a folder registers its images off the GUI thread)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from app.core.errors import MaskLoopError
from app.predict.base import Predictor
from app.ui.main_window import MainWindow
from app.ui.opening import Opened, Target, open_target, resolve
from app.ui.settings import GuiSettings
from app.ui.startup import LoadingPredictor, StartupBuild, load_in_background
from app.ui.tasks import TaskRunner
from app.ui.workers import PredictorBridge

CLOSE_TIMEOUT_S = 0.5  # how long quitting waits for the prediction worker (then it is left
# to finish its uninterruptible step in the background: it is a daemon thread)


class Launcher(QObject):
    """Opens projects into windows; owns the bridge (one predictor for every window)."""

    window_opened = Signal(object)  # MainWindow
    open_failed = Signal(str)

    def __init__(self, bridge: PredictorBridge, settings: GuiSettings | None = None,
                 interactive: bool = True,
                 predictor_factory: Callable[[GuiSettings], Predictor] | None = None) -> None:
        super().__init__()
        self.bridge = bridge
        self.predictor_factory = predictor_factory
        self.settings = settings or GuiSettings.load()
        self.interactive = interactive  # message boxes on errors (off in tests)
        self.tasks = TaskRunner(1, self)
        self.window: MainWindow | None = None
        self._progress: QProgressDialog | None = None
        self._notice: tuple[str, bool] | None = None  # for a window that is not there yet

    def open(self, path: Path | None) -> None:
        """Open a folder, a project file, or (None) the bundled samples."""
        try:
            target = resolve(path)
        except MaskLoopError as exc:
            self._failed(exc)
            return
        if self.interactive:
            self._progress = QProgressDialog("Opening images…", "Cancel", 0, 0)
            self._progress.setMinimumDuration(500)
        task = self.tasks.start(open_target, target, with_progress=True,
                                on_result=lambda opened: self._opened(target, opened),
                                on_error=self._failed, on_progress=self._on_progress)
        if self._progress is not None:
            self._progress.canceled.connect(task.cancel)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if self._progress is not None:
            self._progress.setMaximum(total)
            self._progress.setValue(done)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _opened(self, target: Target, opened: Opened) -> None:
        self._close_progress()
        old = self.window
        self.settings.add_recent(target.project_path)
        window = MainWindow(opened.project, self.bridge, unreadable=opened.unreadable,
                            settings=self.settings, open_path=self.open,
                            switch_backend=self.switch_backend if self.predictor_factory
                            else None)
        window.closed.connect(lambda: self._closed(window))
        self.window = window
        window.show()
        if old is not None:
            old.close()
        if self._notice is not None:
            window.backend_changed(*self._notice)
            self._notice = None
        self.window_opened.emit(window)

    def backend_loaded(self, note: str, failed: bool = False) -> None:
        """The predictor built after start-up is in (or the fallback, ``failed``): show it."""
        if self.window is None:
            self._notice = (note, failed)
        else:
            self.window.backend_changed(note, failed)

    def switch_backend(self, settings: GuiSettings) -> None:
        """Build the predictor ``settings`` ask for off the GUI thread (loading a model takes
        seconds), then move the window to it and close the old one."""
        factory = self.predictor_factory
        if factory is None:
            return

        def built(predictor: Predictor) -> None:
            old, self.bridge = self.bridge, PredictorBridge(predictor)
            if self.window is not None:
                self.window.set_bridge(self.bridge)
            self.tasks.start(old.close)

        def failed(exc: BaseException) -> None:
            if self.window is not None:
                self.window.show_message(f"Could not switch backend: {exc}")

        self.tasks.start_detached(factory, settings, on_result=built, on_error=failed)

    def _closed(self, window: MainWindow) -> None:
        if self.window is window:  # not replaced by another project's window: stop its work
            self.bridge.cancel_all()
        window.project.close()
        if self.window is window:
            self.window = None

    def _failed(self, exc: BaseException) -> None:
        self._close_progress()
        message = str(exc)
        self.open_failed.emit(message)
        if self.interactive:
            QMessageBox.critical(None, "MaskLoop", message)
            if self.window is None:
                QApplication.quit()


def run(target: Path | None, predictor: Predictor | StartupBuild,
        argv: Sequence[str] | None = None,
        predictor_factory: Callable[[GuiSettings], Predictor] | None = None) -> int:
    """Show the app on ``target`` with ``predictor`` and run the event loop; exit code.
    A ``StartupBuild`` (a SAM2 model to load: seconds) is built after the window is shown
    (see startup.py). ``predictor_factory`` builds a predictor from the settings dialog's
    choice (switching backend while running); without it a new choice applies from the
    next start."""
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("MaskLoop")
    app.setOrganizationName("MaskLoop")
    build: StartupBuild | None = None
    loading: LoadingPredictor | None = None
    first: Predictor
    if isinstance(predictor, StartupBuild):  # shown at once, the model loaded meanwhile
        build, loading = predictor, LoadingPredictor(predictor.name)
        first = loading
    else:
        first = predictor
    bridge = PredictorBridge(first)
    launcher = Launcher(bridge, predictor_factory=predictor_factory)
    if build is not None and loading is not None:
        load_in_background(launcher, loading, build)
    launcher.open(target)
    try:
        return int(app.exec())
    finally:
        launcher.settings.save()
        launcher.bridge.close(CLOSE_TIMEOUT_S)
