"""Griffe extension for the docs build: render Sphinx cross-reference roles as code.

The package's docstrings use Sphinx roles (``:class:`WorldModel```,
``:meth:`~pwm_agent.PWM.load```); mkdocstrings does not interpret them. This
extension rewrites each role to an inline code span of the name (the last
dotted part when the target starts with ``~``), before the docstring is
parsed. ``:param ...:``-style fields are untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|obj|exc):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Replace Sphinx roles in every docstring with inline code."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)
