"""What a person reads on a rendered page: its text, and the parts picked by tag, id, class or attribute."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
HIDDEN = {"script", "style", "template"}
# Text on either side of these is never run together: "<li>3</li><li>4</li>" reads "3 4".
BLOCKS = {
    "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "option", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
}  # fmt: skip


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list, repr=False)

    @property
    def text(self) -> str:
        """The element's visible text, with runs of whitespace read as one space."""
        return re.sub(r"\s+", " ", "".join(self.parts)).strip()

    @property
    def value(self) -> str:
        """The text inside exactly as written, line breaks kept: what a textarea holds."""
        return "".join(self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.elements: list[Element] = []
        self.open: list[Element] = [self.root]
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        self.add_text(" " if tag in BLOCKS else "")
        if tag not in VOID:
            self.open.append(element)
            self.hidden += tag in HIDDEN

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                self.hidden -= sum(e.tag in HIDDEN for e in self.open[depth:])
                del self.open[depth:]
                break
        self.add_text(" " if tag in BLOCKS else "")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.add_text(data)

    def add_text(self, text: str) -> None:
        for element in self.open:
            element.parts.append(text)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def visible_text(html: str) -> str:
    """The page's text as a person reads it: no markup, no scripts, whitespace collapsed."""
    return parse(html).root.text


def find_all(html: str, tag: str | None = None, *, class_: str = "", **attrs: str) -> list[Element]:
    """The elements with this tag (any if None), every class in `class_`, and these attribute values
    (`data_worker="x"` matches data-worker="x"), in page order."""
    wanted = set(class_.split())
    return [
        element
        for element in parse(html).elements
        if (tag is None or element.tag == tag)
        and wanted <= element.classes
        and all(element.attrs.get(name.replace("_", "-")) == value for name, value in attrs.items())
    ]


def text_of(html: str, element_id: str) -> str:
    """The visible text of the one element with this id."""
    [element] = find_all(html, id=element_id)
    return element.text
