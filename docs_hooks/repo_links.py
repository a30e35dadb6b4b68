"""MkDocs hook: links from a page to repository files outside docs/.

A page links to code the way it would on a repository browser, with an ordinary relative link:
from docs/guide/08-canary.md, `[promote_canary](../../dags/promote_canary.py)`. MkDocs only knows
the files under docs_dir and would leave such a link broken, so this hook, before MkDocs checks the
page's links:

- turns a link whose target lies outside docs_dir but inside the repository, and exists there (a
  file or a folder), into a link to the repository's source view: `<repo_url>/blob/main/<path>`
  (`/tree/main/` for a folder), keeping any `#fragment` (e.g. `#L10`);
- records a link to a repository path that does not exist, or that leaves the repository, as an
  error naming the page and the link, and fails the build once every page is read (strict or not).

Links inside docs_dir are left to MkDocs, which checks them (and their anchors) itself.
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown import Extension, Markdown
from markdown.treeprocessors import Treeprocessor
from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.repo_links")

BRANCH = "main"


class _State:
    """What the tree processor needs to know about the build and the page being rendered."""

    def __init__(self) -> None:
        self.repo_root: Path | None = None
        self.docs_dir: Path | None = None
        self.repo_url: str = ""
        self.page_src: str | None = None
        self.errors: list[str] = []


STATE = _State()


def resolve(link: str, page_src: str, docs_dir: Path, repo_root: Path, repo_url: str) -> tuple[str | None, str | None]:
    """(new URL, error) for a link found on the page `page_src` (relative to docs_dir).

    (None, None) when the link is not this hook's business (external, absolute, anchor-only, or
    inside docs_dir); (url, None) when it points at an existing repository path; (None, error)
    when it points at a missing one or out of the repository.
    """
    scheme, netloc, path, _query, fragment = urlsplit(link)
    if scheme or netloc or not path or path.startswith(("/", "\\")):
        return None, None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page_src), unquote(path)))
    if not target.startswith("../") and target != "..":
        return None, None  # inside docs_dir: MkDocs checks it
    absolute = (docs_dir / target).resolve()
    try:
        relative = absolute.relative_to(repo_root.resolve())
    except ValueError:
        return None, f"page '{page_src}' links to '{link}', which is outside the repository"
    if not absolute.exists():
        return None, (f"page '{page_src}' links to '{link}', but the repository has no file "
                      f"'{relative.as_posix()}'. Fix the path (it is relative to the page) or remove the link.")
    kind = "tree" if absolute.is_dir() else "blob"
    url = f"{repo_url.rstrip('/')}/{kind}/{BRANCH}/{relative.as_posix()}"
    return (f"{url}#{fragment}" if fragment else url), None


class _RepoLinkProcessor(Treeprocessor):
    def run(self, root):
        if STATE.page_src is None or STATE.docs_dir is None or STATE.repo_root is None:
            return root
        for element in root.iter("a"):
            href = element.get("href")
            if not href:
                continue
            url, error = resolve(href, STATE.page_src, STATE.docs_dir, STATE.repo_root, STATE.repo_url)
            if error:
                STATE.errors.append(error)
                log.error(error)
            elif url:
                element.set("href", url)
        return root


class RepoLinkExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Markdown's API
        # MkDocs's own link processor ("relpath") is registered at priority 0; run before it.
        md.treeprocessors.register(_RepoLinkProcessor(md), "flightdeck_repo_links", 5)


def on_config(config):
    STATE.docs_dir = Path(config["docs_dir"]).resolve()
    STATE.repo_root = Path(config["config_file_path"]).resolve().parent
    STATE.repo_url = config.get("repo_url") or ""
    STATE.errors = []
    if not STATE.repo_url:
        raise PluginError("repo_links: mkdocs.yml needs repo_url (the repository's source view)")
    config["markdown_extensions"].append(RepoLinkExtension())
    return config


def on_pre_build(config):
    STATE.errors = []  # `mkdocs serve` rebuilds with the same module


def on_page_markdown(markdown, page, config, files):
    STATE.page_src = page.file.src_uri
    return markdown


def on_env(env, config, files):
    """Every page has been rendered: fail on the broken repository links found."""
    STATE.page_src = None
    if STATE.errors:
        raise PluginError(f"{len(STATE.errors)} link(s) to missing repository files:\n  "
                          + "\n  ".join(STATE.errors))
    return env
