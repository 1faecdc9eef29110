"""mkdocs hooks: the site's home page is the repository's README.md, so the two never differ.

Its links to ``docs/<page>.md`` become links to ``<page>.md`` (they are relative to the repository's top there, and
to ``docs/`` here), and mkdocs checks them like every other link. Until ``docs/formats.md`` is written, the README's
section on vector files stands in for it, so that the links to it resolve.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FORMATS_PAGE = "formats.md"
FORMATS_SECTION = "## Steering vectors in and out"


def _readme(config: Any) -> str:
    return (Path(config.config_file_path).parent / "README.md").read_text(encoding="utf-8")


def _site_links(markdown: str) -> str:
    return re.sub(r"\]\(docs/", "](", markdown)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    if files.get_file_from_path(FORMATS_PAGE) is None:
        readme = _readme(config)
        start = readme.find(FORMATS_SECTION)
        end = readme.find("\n## ", start + 1)
        section = readme[start:end] if start >= 0 else ""
        body = "# Transfer and formats\n\n" + _site_links(section.split("\n", 1)[1] if section else "")
        files.append(File.generated(config, FORMATS_PAGE, content=body))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    return _site_links(_readme(config))
