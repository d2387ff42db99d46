"""Progress lines for people watching a long backfill: the plan, then one line per window."""

from __future__ import annotations

import time
import typing as t

from tap_amplitude.export.windows import Window

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream


class ExportProgress:
    """Progress lines for people watching a long backfill: a plan, then one line per window."""

    def __init__(self, stream: Stream, windows: list[Window]) -> None:
        """Announce the plan and start the clock."""
        self.stream = stream
        self.hours_planned = sum(window.hours for window in windows)
        self.hours_done = 0
        self.events = 0
        self.bytes = 0
        self.started = time.monotonic()
        if windows:
            stream.logger.info(
                "%s: exporting %d hours (%s) in %d windows",
                stream.name,
                self.hours_planned,
                Window(windows[0].start, windows[-1].end).label(),
                len(windows),
                extra={"stream_name": stream.name, "hours_planned": self.hours_planned},
            )
        else:
            stream.logger.info("%s: up to date, no complete hour to export yet", stream.name)

    def downloaded(self, spool: t.IO[bytes]) -> None:
        """Count a spooled archive's size."""
        self.bytes += spool.seek(0, 2)
        spool.seek(0)

    def window_done(self, window: Window) -> None:
        """Log hours done of hours planned, events, bytes, rate and ETA."""
        self.hours_done += window.hours
        elapsed = max(time.monotonic() - self.started, 1e-9)
        remaining = self.hours_planned - self.hours_done
        eta = elapsed / self.hours_done * remaining if self.hours_done else 0.0
        rate = self.events / elapsed
        self.stream.logger.info(
            "%s progress: %d/%d hours, %d events, %.1f MB downloaded, %.0f events/s, ETA %s",
            self.stream.name,
            self.hours_done,
            self.hours_planned,
            self.events,
            self.bytes / 1e6,
            rate,
            _duration(eta),
            extra={
                "stream_name": self.stream.name,
                "window": window.label(),
                "hours_done": self.hours_done,
                "hours_planned": self.hours_planned,
                "events": self.events,
                "bytes": self.bytes,
                "events_per_second": round(rate, 1),
                "elapsed_seconds": round(elapsed, 1),
                "eta_seconds": round(eta, 1),
            },
        )


def _duration(seconds: float) -> str:
    """``42s``, ``7m05s`` or ``3h12m``."""
    whole = round(seconds)
    if whole < 60:  # noqa: PLR2004
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:  # noqa: PLR2004
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
