"""``amplitude-privacy``: data discovery, access packages and safe GDPR deletion for one project.

Commands (``tap_amplitude.privacy.cli``): ``lookup``, ``access``, ``delete``, ``cancel``,
``verify``, ``jobs``. They reuse the tap's streams (``user_search``, ``user_profiles``,
``deletion_jobs``) and :meth:`~tap_amplitude.client.AmplitudeStream.send` for the requests
no stream makes, so every request gets the tap's authentication, rate limits, retries that
honour ``Retry-After``, and one-line errors.

Modules: ``base`` (config, output, signals, private files), ``audit`` (the audit log),
``lookup`` (``lookup``, ``jobs``), ``deletion`` (``delete``, ``cancel``, ``verify``),
``identities`` (user mapping and merged ids), ``dsar`` (the DSAR API client and its cost
budget), ``access`` (``access``), ``cli`` (the entry point).
"""

from __future__ import annotations

from tap_amplitude.privacy.audit import AuditLog
from tap_amplitude.privacy.base import CliError, load_config, open_tap
from tap_amplitude.privacy.cli import main, run
from tap_amplitude.privacy.deletion import batch_bodies, read_id_file

__all__ = [
    "AuditLog",
    "CliError",
    "batch_bodies",
    "load_config",
    "main",
    "open_tap",
    "read_id_file",
    "run",
]
