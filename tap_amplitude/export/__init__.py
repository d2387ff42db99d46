"""The Export API in one place: windows, downloads, archives, checkpoints and progress.

``windows`` cuts the range into requests, ``download`` sends one and spools its body,
``archive`` reads the zip's members line by line, ``run`` walks the windows in order (with
downloads ahead) and says when hours are complete, ``progress`` tells people how far it got.
"""

from __future__ import annotations

from tap_amplitude.export.archive import LineBlock
from tap_amplitude.export.run import Checkpoint, ExportRun
from tap_amplitude.export.windows import HOUR, Window, export_end, plan_windows

__all__ = ["HOUR", "Checkpoint", "ExportRun", "LineBlock", "Window", "export_end", "plan_windows"]
