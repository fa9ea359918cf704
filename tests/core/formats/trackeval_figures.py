"""Print the TrackEval scores the closing notes quote: the YouTube-VIS and MOTS exports of
the tests' sample video scored against themselves and with one track shifted 8 px.

    cd tests/core/formats && ../../../.venv/bin/python trackeval_figures.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import test_mots
import test_youtube_vis
from video_tracks_data import sample_video


def main() -> None:
    for module, labels in ((test_youtube_vis, test_youtube_vis.LABELS),
                           (test_mots, ("pedestrian", "pedestrian"))):
        for shift in (0, 8):
            with tempfile.TemporaryDirectory() as folder:
                scores = module._trackeval_scores(
                    Path(folder), sample_video(labels), sample_video(labels, shift=shift))
            print(module.__name__, "shift", shift,
                  {k: round(float(v), 4) for k, v in scores.items()})


if __name__ == "__main__":
    main()
