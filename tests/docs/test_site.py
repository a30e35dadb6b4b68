"""The documentation site builds with `mkdocs build --strict`, and its repository-link hook
rejects a link to a file the repository does not have."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.docs.conftest import REPO

MKDOCS = Path(sys.executable).with_name("mkdocs")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict(tmp_path):
    done = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "guide" / "index.html").exists()
    # docs_hooks/nav_order.py: the chapters come before the exercises and the other pages.
    home = (tmp_path / "site" / "index.html").read_text()
    guide, architecture = home.find('href="guide/01-overview/"'), home.find('href="ARCHITECTURE/"')
    assert 0 <= guide < architecture, "the guide's chapters must come first in the navigation"
    if 'href="exercises/"' in home:
        assert guide < home.find('href="exercises/"')


def _tiny_site(root: Path, link: str) -> Path:
    """A repository-like folder: a file `src/present.py`, docs/ with one page linking to `link`,
    and an mkdocs.yml using the real hook."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "present.py").write_text("x = 1\n")
    (root / "docs" / "guide").mkdir(parents=True)
    (root / "docs" / "index.md").write_text("# Home\n")
    (root / "docs" / "guide" / "page.md").write_text(f"# Page\n\nSee [the code]({link}).\n")
    config = root / "mkdocs.yml"
    config.write_text(textwrap.dedent(f"""\
        site_name: tiny
        repo_url: https://example.org/acme/tiny
        docs_dir: docs
        hooks:
          - {REPO / "docs_hooks" / "repo_links.py"}
        """))
    return config


def test_hook_links_an_existing_repository_file_to_the_source_view(tmp_path):
    config = _tiny_site(tmp_path / "repo", "../../src/present.py#L1")
    done = mkdocs_build(config, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    html = (tmp_path / "site" / "guide" / "page" / "index.html").read_text()
    assert 'href="https://example.org/acme/tiny/blob/main/src/present.py#L1"' in html


def test_hook_rejects_a_link_to_a_missing_repository_file(tmp_path):
    config = _tiny_site(tmp_path / "repo", "../../src/absent.py")
    done = mkdocs_build(config, tmp_path / "site")
    assert done.returncode != 0
    assert "page 'guide/page.md' links to '../../src/absent.py', but the repository has no file 'src/absent.py'" \
        in done.stderr, done.stderr[-4000:]
