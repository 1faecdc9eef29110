"""mkdocs hooks: the site's home page is the repository's README.md, so the two never differ.

Its links to ``docs/<page>.md`` become links to ``<page>.md`` (they are relative to the repository's top there, and
to ``docs/`` here), and mkdocs checks them like every other link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def _readme(config: Any) -> str:
    return (Path(config.config_file_path).parent / "README.md").read_text(encoding="utf-8")


def _site_links(markdown: str) -> str:
    return re.sub(r"\]\(docs/", "](", markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    return _site_links(_readme(config))
