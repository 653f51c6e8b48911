"""``kedit docs [TOPIC]``: the documentation of pytest-kedit, shipped in the package
(``pytest_kedit.docs``: the repository's ``docs/*.md``), so that an installed package can read what
its help texts and errors point at (``kedit docs ci``)."""

from __future__ import annotations

import argparse
from importlib import resources
from typing import Any

from pytest_kedit.errors import KeditError


def topics() -> dict[str, str]:
    """Topic -> the text of its page, for every ``docs/<topic>.md``, by topic."""
    pages = {page.name.removesuffix(".md"): page for page in resources.files("pytest_kedit.docs").iterdir()
             if page.name.endswith(".md")}
    return {topic: pages[topic].read_text(encoding="utf-8") for topic in sorted(pages)}


def title(text: str) -> str:
    """A page's title: its first Markdown heading, without the ``#``."""
    return next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")


def add_docs(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "docs",
        help="print a page of the documentation (without TOPIC: list them)",
        description="Print the documentation page TOPIC (Markdown, as the project publishes it); without "
                    "TOPIC, list the topics with their titles. Help texts and errors name their page as "
                    "'kedit docs TOPIC'.",
    )
    parser.add_argument("topic", nargs="?", metavar="TOPIC", help="a page: ci, metrics, editors, ... (without it, the list of pages)")
    parser.set_defaults(handler=_docs)


def _docs(args: argparse.Namespace) -> int:
    pages = topics()
    if args.topic is None:
        width = max(map(len, pages))
        for topic, text in pages.items():
            print(f"{topic:{width}}  {title(text)}")
        return 0
    topic = args.topic.removesuffix(".md").removeprefix("docs/")
    if topic not in pages:
        raise KeditError(f"no documentation page {args.topic!r}; choose from {', '.join(pages)}")
    print(pages[topic], end="")
    return 0
