"""Module arguments for unit tests that run a module's main(), on every supported ansible-core.

ansible-core 2.19 added a serialization profile next to the arguments (a module without one
fails with "No serialization profile was specified") and ships its own test helper for it;
2.18 reads ``basic._ANSIBLE_ARGS`` alone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils import _internal as _core_internal  # 2.19+
    from ansible.module_utils.testing import patch_module_args as _core_patch_module_args
except ImportError:  # ansible-core 2.18
    _core_internal = None
    _core_patch_module_args = None


@contextlib.contextmanager
def patch_module_args(args: dict) -> Iterator[None]:
    """Expose ``args`` to every AnsibleModule created inside the block, as Ansible would pass them.

    The block also runs as a module process does on a host: once a test in the same pytest
    process has imported controller code (an inventory or callback plugin), ansible-core 2.19+
    would otherwise send the module's warnings to the controller's display instead of its result.
    """
    if _core_patch_module_args is not None:
        with _core_patch_module_args(args), mock.patch.object(_core_internal, "is_controller", False):
            yield
        return
    with mock.patch.object(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))):
        yield


def module_result(printed: str) -> dict:
    """The JSON a module printed, with warnings as the message strings the controller shows.

    From ansible-core 2.19 on, a module returns each warning as a structured summary
    (``{"event": {"msg": ...}, ...}``) that the controller turns into text.
    """
    result = json.loads(printed)
    if "warnings" in result:
        result["warnings"] = [_message(w) for w in result["warnings"]]
    return result


def _message(warning) -> str:
    if isinstance(warning, dict):
        return warning.get("event", {}).get("msg", warning.get("msg", ""))
    return warning
