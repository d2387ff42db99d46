"""The private singer-sdk API the tap relies on is still there, with the same signatures.

An SDK upgrade that renames or reshapes one of them fails here, naming it, instead of in a
user's pipeline. Private names may appear only in ``tap_amplitude/sdk.py`` and the two
overrides it lists for the tap class.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from tap_amplitude.sdk import PRIVATE_API

PACKAGE = Path(__file__).resolve().parents[1] / "tap_amplitude"
# What the pinned SDK (0.54.x) has; a difference means the adapter must be revisited.
PINNED_SIGNATURES = {
    "singer_sdk.streams.core.Stream._sync_records": (
        "(self, context: 'types.Context | None' = None, *, write_messages: 'bool' = True)"
        " -> 't.Generator[dict, t.Any, t.Any]'"
    ),
    "singer_sdk.streams.core.Stream._write_state_message": "(self) -> 'None'",
    "singer_sdk.plugin_base.PluginBase._validate_config": (
        "(self, *, raise_errors: 'bool' = True) -> 'list[str]'"
    ),
    "singer_sdk.tap_base.Tap._handle_termination": (
        "(self, signum: 'int', frame: 'FrameType | None') -> 'None'"
    ),
}
# Private names the tap's own classes may define or call outside the adapter: overrides of
# the hooks the adapter lists, and the SDK's own conventions for protected members.
ALLOWED_ELSEWHERE = {"_validate_config", "_handle_termination"}
SDK_PRIVATE_ATTRIBUTES = {"_tap", "_request", "_sync_records", "_write_state_message"}


def _resolve(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise AssertionError(path)


@pytest.mark.parametrize("path", sorted(PINNED_SIGNATURES))
def test_private_hooks_keep_their_signature(path: str) -> None:
    assert path in PRIVATE_API
    assert str(inspect.signature(_resolve(path))) == PINNED_SIGNATURES[path]


def test_every_listed_name_exists_and_says_why() -> None:
    for path, why in PRIVATE_API.items():
        assert why.strip(), path
        owner, _, attribute = path.rpartition(".")
        if not hasattr(_resolve(owner), attribute):  # an instance attribute: set in __init__
            assert f"self.{attribute} = " in inspect.getsource(_resolve(owner).__init__), path


def _private_sdk_uses(source: str) -> set[str]:
    """Imports from private SDK modules, private SDK attributes, and ``super()._hooks``."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singer_sdk"):
            if "._" in f".{node.module}":
                used.add(str(node.module))
        elif isinstance(node, ast.Attribute) and (
            node.attr in SDK_PRIVATE_ATTRIBUTES or _is_super_private(node)
        ):
            used.add(node.attr)
    return used


def _is_super_private(node: ast.Attribute) -> bool:
    base = node.value
    return (
        node.attr.startswith("_")
        and not node.attr.startswith("__")
        and isinstance(base, ast.Call)
        and isinstance(base.func, ast.Name)
        and base.func.id == "super"
    )


def test_private_sdk_api_is_used_only_in_the_adapter() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "sdk.py":
            continue
        used = _private_sdk_uses(path.read_text()) - ALLOWED_ELSEWHERE
        if used:
            offenders[str(path.relative_to(PACKAGE))] = sorted(used)
    assert not offenders
