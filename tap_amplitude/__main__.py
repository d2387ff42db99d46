"""``python -m tap_amplitude`` runs the tap CLI."""

from __future__ import annotations

from tap_amplitude.entry import tap

tap()
