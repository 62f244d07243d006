"""The site's build hook (listed under ``hooks:`` in mkdocs.yml)."""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown
