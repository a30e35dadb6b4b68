"""MkDocs hook: the order of the top-level navigation.

mkdocs.yml has no `nav:` (pages are ordered by file name), which would put `exercises/` before
`guide/`. This hook keeps everything else as MkDocs found it and only orders the top level:
the home page, then the guide's chapters, then the exercises, then any other page (the
architecture notes); previous / next links follow the new order.
"""

from __future__ import annotations

TOP_LEVEL = ("index.md", "guide/", "exercises/")


def _first_page(item):
    if getattr(item, "is_page", False):
        return item
    for child in getattr(item, "children", None) or []:
        page = _first_page(child)
        if page is not None:
            return page
    return None


def _rank(item) -> int:
    page = _first_page(item)
    src = page.file.src_uri if page is not None and page.file is not None else ""
    for rank, prefix in enumerate(TOP_LEVEL):
        if src == prefix or (prefix.endswith("/") and src.startswith(prefix)):
            return rank
    return len(TOP_LEVEL)


def _pages(items) -> list:
    found = []
    for item in items:
        if getattr(item, "is_page", False):
            found.append(item)
        else:
            found.extend(_pages(getattr(item, "children", None) or []))
    return found


def on_nav(nav, config, files):
    nav.items.sort(key=_rank)  # stable: the order within a rank is MkDocs's
    pages = _pages(nav.items)
    nav.pages = pages
    for index, page in enumerate(pages):
        page.previous_page = pages[index - 1] if index > 0 else None
        page.next_page = pages[index + 1] if index + 1 < len(pages) else None
    return nav
