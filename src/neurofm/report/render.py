"""Pages of the report from Jinja2 templates (``report/templates``), every value autoescaped.

Every page extends ``base.html`` (title, navigation, footer, offline assets) and fills its
``body`` block (and ``scripts`` when it needs JavaScript).

Adding a page (for example "Explanations" or "Study"):

1. write a template ``<name>.html`` that starts with ``{% extends "base.html" %}`` and fills
   ``{% block body %}`` from the data object it is given (a dataclass is best: the data is then
   testable without HTML). It may live in ``report/templates`` or in the feature's own package
   (pass that folder as ``templates``); ``macros.html`` (swatch, ci, figures) and the ``num``
   filter are available either way;
2. pass ``ReportPage("<name>.html", "<nav label>", "<name>.html", {"data": obj}, templates)``
   in ``extra_pages`` of :func:`neurofm.report.build_report` — it is rendered into the report
   folder and linked from the navigation of every page — or call :func:`render_page` directly.
   A page whose figures already exist as files (drawn by another command) lists them in
   ``files`` (path in the report folder -> source file): they are copied beside the pages.
   A page that makes files of its own (a case viewer's embedded volumes) gives ``write``, called
   with the report folder before rendering; what it returns is added to the page's context.

Figures are files beside the pages (``figures/*.png``), so a page only refers to them by path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from neurofm import __version__


@dataclass(frozen=True)
class PageLink:
    """An entry of the navigation bar."""

    href: str
    label: str


@dataclass(frozen=True)
class ReportPage:
    """A page to render into the report folder and link from every page's navigation."""

    filename: str
    label: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    templates: Path | None = None  # folder of the template, when not report/templates
    files: Mapping[str, Path] = field(default_factory=dict)  # report-relative path -> source
    # writes files of its own into the report folder (e.g. a case viewer's data) before the page
    # is rendered; returns context added to ``context``
    write: Callable[[Path], Mapping[str, Any]] | None = None


def num(value: float, decimals: int = 2) -> str:
    """A number with the metric's decimals; a missing value is a dash."""
    if value is None or value != value:  # NaN is the only value unequal to itself
        return "–"
    return f"{value:.{decimals}f}"


def environment(templates: Path | None = None) -> jinja2.Environment:
    """``templates`` (if given) before this package's templates, HTML-autoescaped, undefined
    names an error."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("neurofm.report", "templates")]
    if templates is not None:
        loaders.insert(0, jinja2.FileSystemLoader(templates))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    return env


def render_page(
    template: str,
    out: Path,
    *,
    title: str,
    nav: Sequence[PageLink],
    templates: Path | None = None,
    **context: Any,
) -> Path:
    """Render ``template`` with ``context`` (plus title, navigation, version, time) to ``out``."""
    text = (
        environment(templates)
        .get_template(template)
        .render(
            title=title,
            nav=list(nav),
            version=__version__,
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            **context,
        )
    )
    out.write_text(text, encoding="utf-8")
    return out
