"""What a stream is asked to do: the view, the limits and the queue sizes, checked where they are made."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from edgeseg.errors import BadInputError
from edgeseg.runtime.instance_render import check_score_threshold
from edgeseg.runtime.visualize import VIEWS


@dataclass(frozen=True)
class PipelineConfig:
    view: str = "overlay"  # overlay | mask | side
    alpha: float = 0.5  # weight of the colour mask in the overlay
    legend: bool = True
    hud: bool = True  # FPS and latency drawn on the picture
    max_frames: int | None = None  # stop each source after this many processed frames
    queue_size: int = 1  # frames between two stages of a file source: 1 overlaps them (2: no faster, +40% latency)
    report_every_s: float = 5.0  # console line interval; 0: quiet
    engine_fps_iterations: int = 0  # > 0: time that many session.infer calls alone before and after the stream
    keep_inputs: int = 8  # frames read ahead (and later the most recent engine inputs kept) for that timing
    score_threshold: float | None = None  # instance engines: objects shown from this score (None: 0.5)
    batch: int | None = None  # frames per engine call; None: the engine's fixed batch, or one per source if dynamic
    # engine calls at once, each source served by one; None: one per source where the session takes concurrent
    # calls and the engine a batch of 1 (ONNX Runtime), else 1
    engine_workers: int | None = None

    def __post_init__(self) -> None:
        """Refuse values that would run nothing or something else than asked (max_frames=-1 used to stop at
        once with success, alpha=7 to paint past white) where the config is made, for the CLI and the API alike."""
        if self.view not in VIEWS:
            raise BadInputError(f"view '{self.view}' is not one of {', '.join(VIEWS)}",
                                f"pass one of {', '.join(VIEWS)}")
        if not 0.0 <= _number(self.alpha) <= 1.0:  # NaN fails too
            raise BadInputError(f"alpha {self.alpha!r} is out of range", "pass a mask weight between 0 and 1")
        _need_int("max_frames", self.max_frames, 1, allow_none=True)
        _need_int("queue_size", self.queue_size, 1)
        _need_int("engine_fps_iterations", self.engine_fps_iterations, 0)
        _need_int("keep_inputs", self.keep_inputs, 1)
        _need_int("batch", self.batch, 1, allow_none=True)
        _need_int("engine_workers", self.engine_workers, 1, allow_none=True)
        check_score_threshold(self.score_threshold)
        if not _number(self.report_every_s) >= 0:
            raise BadInputError(f"report_every_s {self.report_every_s!r} is negative or not a number",
                                "pass 0 (quiet) or a positive interval in seconds")


def _number(value: object) -> float:
    """A setting as a float (numpy scalars included); NaN for anything else, which every range check refuses."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _need_int(name: str, value: object, lowest: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
        raise BadInputError(f"PipelineConfig.{name} is {value!r}: it must be a whole number of at least {lowest}",
                            f"pass {name}={lowest} or more" + (" (or None: no limit)" if allow_none else ""))
