"""MkDocs hook: the repository's top-level documents become pages of the documentation site.

SECURITY.md, CHANGELOG.md and benchmarks/README.md live outside ``docs/`` (where GitHub and
package indexes expect them). This hook adds them to the site under the names in
``ROOT_PAGES`` and rewrites links to them, so a page in ``docs/`` links to ``../SECURITY.md``
(which works when the Markdown is read in the repository) and the built site links to the
page ``security/``. Links from those documents into ``docs/`` are rewritten the other way.
Only the standard library and MkDocs' own API: the site builds offline.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

# Repository path -> page name in the site.
ROOT_PAGES = {
    "SECURITY.md": "security.md",
    "CHANGELOG.md": "changelog.md",
    "benchmarks/README.md": "benchmarks.md",
}

# A Markdown link or image target: "](target" up to ")", "#" or whitespace.
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)")


def on_files(files: Files, config) -> Files:
    for repo_path, page in ROOT_PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / repo_path)))
    return files


def _site_target(page_src: str, target: str) -> str | None:
    """The site page a repository-relative link from ``page_src`` points to, if it is one."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    if page_src in ROOT_PAGES.values():
        origin = next(p for p, name in ROOT_PAGES.items() if name == page_src)
    else:
        origin = f"docs/{page_src}"
    repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(origin), target))
    if repo_path in ROOT_PAGES:
        site_path = ROOT_PAGES[repo_path]
    elif repo_path.startswith("docs/") and page_src in ROOT_PAGES.values():
        site_path = repo_path[len("docs/") :]
    else:
        return None
    return posixpath.relpath(site_path, posixpath.dirname(page_src) or ".")


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    src = page.file.src_uri

    def rewrite(match: re.Match) -> str:
        target = _site_target(src, match["target"])
        return match.group(0) if target is None else f"]({target}"

    return LINK.sub(rewrite, markdown)
