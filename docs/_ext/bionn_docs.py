"""The small Sphinx extension behind bionn's documentation site.

It does four things, none of which names a rule family, so that new modules, pages and
examples join the site without an edit here or in ``conf.py``:

1. **API index.** Before autosummary runs, it writes ``api/index.rst``: one recursive
   autosummary entry per public subpackage or module of ``bionn`` (whatever the installed
   package holds), so autosummary generates a page for every module below them.
2. **Docstring check.** :func:`undocumented_public_names` lists every public module, class,
   function, method and property of ``bionn`` without a docstring; each one is a warning, so
   ``sphinx-build -W`` fails on it (Sphinx itself would skip the name silently). The test suite
   calls the same function.
3. **CLI reference.** The ``bionn-cli`` directive renders ``bionn --help`` and the help of
   every subcommand, taken from the argparse parser by running ``python -m bionn``'s own
   parser in a subprocess, so the page cannot drift from the command.
4. **Links out of docs/.** A markdown page may link to a file of the repository
   (``[rule](../../src/bionn/rules/x.py)``), which works on GitHub. In the site, a link to a
   module of ``src/bionn/`` becomes a link to its API page; a link to another file becomes a
   download of that file, copied into the site (or, with ``bionn_repository_url`` set, a link
   to it there); a link to a folder becomes the folder's API page (a package) or a repository
   link, else plain text. A link to a path that does not exist stays a warning.

The docstring check and the CLI help need no Sphinx and are importable on their own.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "bionn"


# --- 1. the modules ---------------------------------------------------------------------------


def public_modules(package: str = PACKAGE) -> list[str]:
    """Every importable module of ``package`` whose dotted name has no part starting with _."""
    root = importlib.import_module(package)
    names = [package]
    if hasattr(root, "__path__"):
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            names.append(info.name)
    return sorted(names)


def top_level_modules(package: str = PACKAGE) -> list[str]:
    """The public subpackages and modules directly below ``package``."""
    root = importlib.import_module(package)
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(root.__path__)
        if not info.name.startswith("_")
    )


API_INDEX = """\
API reference
=============

Generated from the docstrings of the installed ``{package}`` package: one page per module,
with every public class and function. Each package's page lists its modules.

.. autosummary::
   :toctree: generated
   :recursive:

{entries}
"""


def write_api_index(srcdir: Path, package: str = PACKAGE) -> Path:
    """Writes ``api/index.rst`` under ``srcdir`` (only when its text changes)."""
    path = srcdir / "api" / "index.rst"
    entries = "\n".join(f"   {name}" for name in top_level_modules(package))
    text = API_INDEX.format(package=package, entries=entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


# --- 2. the docstring check -------------------------------------------------------------------


def _public_names(module: ModuleType) -> list[str]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return [n for n in vars(module) if not n.startswith("_")]


def _owned(obj: Any, module: ModuleType, package: str) -> bool:
    """Whether ``obj`` is a class or function that ``package`` defines (not a re-export of
    another library's name)."""
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return False
    owner = getattr(obj, "__module__", None) or ""
    if hasattr(module, "__all__"):
        return owner == package or owner.startswith(f"{package}.")
    return owner == module.__name__


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties ``cls`` itself defines."""
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if inspect.isfunction(raw) or isinstance(raw, property) or inspect.isclass(raw):
            yield name, getattr(cls, name, raw)


def undocumented_public_names(package: str = PACKAGE) -> list[str]:
    """The dotted names of public modules, classes, functions, methods and properties of
    ``package`` that have no docstring.

    A name is public when its module is public (no part of its dotted name starts with an
    underscore) and it is listed in that module's ``__all__`` (or, for a module without
    ``__all__``, does not start with an underscore and is defined there). Methods count when
    their own name is public; a method that overrides a documented one inherits its docstring,
    as in ``inspect.getdoc`` and autodoc.
    """
    missing: list[str] = []
    seen: set[int] = set()
    for modname in public_modules(package):
        module = importlib.import_module(modname)
        if not inspect.getdoc(module):
            missing.append(modname)
        for name in _public_names(module):
            obj = getattr(module, name, None)
            if not _owned(obj, module, package) or id(obj) in seen:
                continue
            seen.add(id(obj))
            qualname = f"{obj.__module__}.{obj.__qualname__}"
            if not inspect.getdoc(obj):
                missing.append(qualname)
            if inspect.isclass(obj):
                for member, value in _members(obj):
                    if not inspect.getdoc(value):
                        missing.append(f"{qualname}.{member}")
    return sorted(set(missing))


# --- 3. the CLI reference ---------------------------------------------------------------------

_HELP_SCRIPT = """
import argparse, json
from bionn.cli import build_parser

def walk(parser, words):
    out = [(words, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += walk(sub, words + [name])
    return out

print(json.dumps(walk(build_parser(), ["bionn"])))
"""

HELP_COLUMNS = "100"


def cli_helps() -> list[tuple[list[str], str]]:
    """``[(["bionn", "train"], help text), ...]`` for the command and each subcommand, from the
    parser the ``bionn`` command builds, in a fresh interpreter at a fixed terminal width."""
    env = dict(os.environ, COLUMNS=HELP_COLUMNS)
    done = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return [(list(words), text) for words, text in json.loads(done.stdout)]


# --- 4. links out of docs/ --------------------------------------------------------------------


def module_for_path(path: Path, repo_root: Path, package: str = PACKAGE) -> str | None:
    """The dotted module name of a file or folder under ``src/<package>/``, or None."""
    src = (repo_root / "src").resolve()
    try:
        rel = path.resolve().relative_to(src)
    except ValueError:
        return None
    parts = list(rel.parts)
    if not parts or parts[0] != package:
        return None
    if path.is_dir():
        return ".".join(parts) if (path / "__init__.py").exists() else None
    if path.suffix != ".py":
        return None
    parts[-1] = parts[-1][: -len(".py")]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# --- the gallery ------------------------------------------------------------------------------

_REGISTRY_SNAPSHOT: dict[str, Any] | None = None


def reset_registry(gallery_conf: Any, fname: str, when: str | None = None) -> None:
    """Gallery hook: restores the rule registry between examples, so a rule an example
    registers stays in that example."""
    global _REGISTRY_SNAPSHOT
    from bionn.core import registry

    registry.rule_names()  # loads bionn.rules
    if _REGISTRY_SNAPSHOT is None:
        _REGISTRY_SNAPSHOT = dict(registry.RULES)
        return
    registry.RULES.clear()
    registry.RULES.update(_REGISTRY_SNAPSHOT)


# --- docstrings as written: plain text with ``literals`` ---------------------------------------

_LITERAL = re.compile(r"(``.+?``|`[^`]+`_?|:[a-z:]+:`[^`]+`)")


def escape_bars(lines: list[str]) -> None:
    """Escapes ``|`` outside literals and roles, in place: in bionn's docstrings ``|x|`` and
    ``||w||_p`` are absolute values and norms, never reStructuredText substitutions."""
    for i, line in enumerate(lines):
        if "|" in line:
            parts = _LITERAL.split(line)
            lines[i] = "".join(
                part if j % 2 else part.replace("|", "\\|") for j, part in enumerate(parts)
            )


# --- Sphinx -----------------------------------------------------------------------------------


def setup(app: Any) -> dict[str, Any]:
    """Registers the directive, the link rewriting, the API index and the docstring check."""
    from docutils import nodes
    from sphinx import addnodes
    from sphinx.util import logging
    from sphinx.util.docutils import SphinxDirective

    logger = logging.getLogger(__name__)

    class CLIDirective(SphinxDirective):
        """``bionn-cli``: one section per command, holding its ``--help``."""

        has_content = False

        def run(self) -> list[nodes.Node]:
            out: list[nodes.Node] = []
            for words, text in cli_helps():
                title = " ".join(words)
                section = nodes.section()
                section["names"].append(nodes.fully_normalize_name(title))
                section["ids"].append(nodes.make_id(title))
                section += nodes.title(title, "", nodes.literal(title, title))
                block = nodes.literal_block(text, text)
                block["language"] = "text"
                section += block
                self.state.document.note_implicit_target(section)
                out.append(section)
            return out

    def on_config_inited(app: Any, config: Any) -> None:
        if config.bionn_api_index:
            write_api_index(Path(app.srcdir))  # before Sphinx lists the source files

    def on_builder_inited(app: Any) -> None:
        if not app.config.bionn_check_docstrings:
            return
        for name in undocumented_public_names():
            logger.warning(
                "public name %s has no docstring", name, type="bionn", subtype="docstring"
            )

    def rewrite_links(app: Any, doctree: nodes.document) -> None:
        srcdir = Path(app.srcdir).resolve()
        repo = Path(app.config.bionn_repository_root).resolve()
        url = app.config.bionn_repository_url.rstrip("/")
        docname = app.env.docname
        here = Path(app.env.doc2path(docname)).resolve().parent
        for node in list(doctree.findall(addnodes.pending_xref)) + list(
            doctree.findall(addnodes.download_reference)
        ):
            if node.get("reftype") != "myst":
                continue
            target = str(node.get("reftarget", "")).split("#", 1)[0]
            if not target or "://" in target:
                continue
            path = (here / target).resolve()
            if path.is_relative_to(srcdir) or not path.is_relative_to(repo):
                continue
            if not path.exists():
                continue  # a broken link: MyST warns, and -W fails the build
            rel = path.relative_to(repo).as_posix()
            children = node.children or [nodes.literal(target, target)]
            module = module_for_path(path, repo)
            if module is not None:
                new = addnodes.pending_xref(
                    "", refdomain="py", reftype="mod", reftarget=module, refexplicit=True,
                    refdoc=docname, refwarn=True,
                )
            elif url:
                kind = "tree" if path.is_dir() else "blob"
                new = nodes.reference("", "", refuri=f"{url}/{kind}/HEAD/{rel}", internal=False)
            elif path.is_file():
                continue  # MyST made it a download of the file, which Sphinx copies
            else:
                new = nodes.inline(classes=["repository-path"])
            new.extend(child.deepcopy() for child in children)
            node.replace_self(new)

    def on_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]):
        escape_bars(lines)

    def skip_member(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any):
        doc = getattr(obj, "__doc__", None) or ""
        if isinstance(doc, str) and doc.startswith("Alias for field number"):
            return True  # a NamedTuple field: its class docstring's Attributes describe it
        return None

    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", on_docstring)
    app.connect("autodoc-skip-member", skip_member)
    app.add_config_value("bionn_repository_root", str(Path(app.confdir).parent), "env")
    app.add_config_value("bionn_repository_url", "", "env")
    app.add_config_value("bionn_api_index", True, "env")
    app.add_config_value("bionn_check_docstrings", True, "env")
    app.add_directive("bionn-cli", CLIDirective)
    app.connect("config-inited", on_config_inited)
    app.connect("builder-inited", on_builder_inited)
    # before Sphinx's collector copies the files that download links point to
    app.connect("doctree-read", rewrite_links, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


__all__ = [
    "cli_helps",
    "escape_bars",
    "module_for_path",
    "public_modules",
    "reset_registry",
    "top_level_modules",
    "undocumented_public_names",
    "write_api_index",
]

if __name__ == "__main__":  # python docs/_ext/bionn_docs.py: list what lacks a docstring
    parser = argparse.ArgumentParser(description="list public names without a docstring")
    parser.parse_args()
    names = undocumented_public_names()
    print("\n".join(names) or "every public name has a docstring")
    sys.exit(1 if names else 0)
