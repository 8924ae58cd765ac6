"""The documentation's own checks, which need no Sphinx: every public name has a docstring (the
site's build fails otherwise), the CLI reference is what ``bionn --help`` prints, links out of
``docs/`` map to the right API page, the examples are gallery scripts, and the version is
written in one place."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bionn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import bionn_docs  # noqa: E402


def test_every_public_name_has_a_docstring():
    missing = bionn_docs.undocumented_public_names()
    assert missing == [], "public names without a docstring:\n" + "\n".join(missing)


def test_docstring_check_finds_exactly_the_undocumented_names(tmp_path, monkeypatch):
    # oracle: a hand-made package whose undocumented public names are listed by hand
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''\
        """A package."""
        from fakepkg.mod import Documented, bare
        __all__ = ["Documented", "bare"]
        '''))
    (pkg / "mod.py").write_text(textwrap.dedent('''\
        """A module."""
        from pathlib import Path
        class Documented:
            """Has a docstring."""
            def method(self):
                """Documented."""
            def bare_method(self):
                pass
            @property
            def prop(self):
                return 1
            def _private(self):
                pass
        class Child(Documented):
            """Overrides a documented method, so inherits its docstring."""
            def method(self):
                pass
        def bare():
            pass
        def _hidden():
            pass
        '''))
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "_private.py").write_text("def nothing():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert bionn_docs.undocumented_public_names("fakepkg") == [
        "fakepkg.mod.Documented.bare_method",
        "fakepkg.mod.Documented.prop",
        "fakepkg.mod.bare",
        "fakepkg.sub",
    ]


def _help(words: list[str]) -> str:
    env = dict(os.environ, COLUMNS=bionn_docs.HELP_COLUMNS)
    done = subprocess.run(
        [sys.executable, "-m", "bionn", *words, "--help"],
        capture_output=True, text=True, env=env, check=True,
    )
    return done.stdout


def test_cli_reference_is_what_bionn_help_prints():
    helps = bionn_docs.cli_helps()
    commands = [" ".join(words) for words, _ in helps]
    for command in ("bionn", "bionn rules", "bionn train", "bionn compare",
                    "bionn data download", "bionn data verify"):
        assert command in commands
    # one subprocess per command is slow (each imports torch): compare the longest, which holds
    # every rule's options
    assert dict((" ".join(w), t) for w, t in helps)["bionn train"] == _help(["train"])


def test_module_for_path_maps_sources_to_modules():
    src = ROOT / "src" / "bionn"
    assert bionn_docs.module_for_path(src / "rules" / "feedback_alignment.py", ROOT) == (
        "bionn.rules.feedback_alignment")
    assert bionn_docs.module_for_path(src / "core" / "__init__.py", ROOT) == "bionn.core"
    assert bionn_docs.module_for_path(src / "native", ROOT) == "bionn.native"
    assert bionn_docs.module_for_path(src / "native" / "krotov.c", ROOT) is None
    assert bionn_docs.module_for_path(ROOT / "benchmarks" / "decolle.py", ROOT) is None


def _build_site(srcdir: Path, outdir: Path) -> str:
    """Builds the HTML of the Sphinx project in ``srcdir``; returns its warnings."""
    import io

    from sphinx.application import Sphinx

    warnings = io.StringIO()
    app = Sphinx(str(srcdir), str(srcdir), str(outdir), str(outdir / ".doctrees"), "html",
                 status=None, warning=warnings, freshenv=True)
    app.build()
    return warnings.getvalue()


@pytest.mark.filterwarnings("ignore:.*Check CHANGES for Sphinx API modifications")
def test_links_out_of_docs_render_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    # a repository in miniature: a module, a benchmark script, a results folder, a docs page
    (tmp_path / "src" / "bionn" / "rules").mkdir(parents=True)
    (tmp_path / "src" / "bionn" / "rules" / "fake.py").write_text('"""A rule."""\n')
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "fake.py").write_text("print('measured')\n")
    docs = tmp_path / "docs"
    (docs / "rules").mkdir(parents=True)
    (docs / "conf.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(ROOT / "docs" / "_ext")!r})
        extensions = ["myst_parser", "bionn_docs"]
        bionn_repository_root = {str(tmp_path)!r}
        bionn_api_index = False
        bionn_check_docstrings = False
        """))
    (docs / "index.md").write_text(
        "# Site\n\n```{toctree}\n:glob:\n\nrules/*\napi\n```\n")
    (docs / "api.md").write_text("# API\n\n```{py:module} bionn.rules.fake\n```\n")
    page = docs / "rules" / "fake.md"
    page.write_text(
        "# Fake\n\nCode: [the rule](../../src/bionn/rules/fake.py), "
        "[the benchmark](../../benchmarks/fake.py), [results](../../benchmarks/results/).\n")
    out = tmp_path / "html"
    assert _build_site(docs, out) == ""
    html = (out / "rules" / "fake.html").read_text(encoding="utf-8")
    assert 'href="../api.html#module-bionn.rules.fake"' in html
    downloads = list((out / "_downloads").rglob("fake.py"))
    assert len(downloads) == 1 and downloads[0].read_text() == "print('measured')\n"
    assert f'href="../{downloads[0].relative_to(out).as_posix()}"' in html
    assert "results" in html

    # a link to a file that does not exist still warns, so -W fails on it
    page.write_text("# Fake\n\n[gone](../../benchmarks/missing.py)\n")
    assert "missing.py" in _build_site(docs, tmp_path / "html2")


def test_escape_bars_leaves_literals_and_roles_alone():
    lines = ["B = |R| * sign(W), ||w||_p = R", "``a | b`` and :mod:`x` and |x|"]
    bionn_docs.escape_bars(lines)
    assert lines == [r"B = \|R\| * sign(W), \|\|w\|\|_p = R", r"``a | b`` and :mod:`x` and \|x\|"]


@pytest.mark.parametrize(
    "script", sorted((ROOT / "docs" / "examples").glob("*.py")), ids=lambda p: p.name
)
def test_example_is_a_gallery_script(script):
    """sphinx-gallery needs a module docstring that opens with a title underlined by '='."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")), clean=True)
    assert doc, f"{script.name} has no module docstring"
    title, underline = doc.splitlines()[:2]
    assert title.strip() and set(underline.strip()) == {"="}, f"{script.name}: no title"
    assert len(underline.strip()) >= len(title.strip()), f"{script.name}: short underline"


def test_the_version_is_written_once(capsys):
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not any(line.startswith("version") for line in project.splitlines())
    assert importlib.metadata.version("bionn") == bionn.__version__
    from bionn.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"bionn {bionn.__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## {bionn.__version__}\n" in changelog
