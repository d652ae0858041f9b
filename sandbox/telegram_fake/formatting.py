"""Telegram text formatting: parse modes, auto-detected entities and UTF-16 offsets.

Telegram turns HTML / MarkdownV2 / Markdown into plain text plus entities (offsets and lengths
in UTF-16 code units) and rejects malformed markup.  Bots that interpolate unescaped user input
hit exactly these errors in production, so the fake reproduces them instead of storing the
markup verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class ParseError(Exception):
    """Malformed markup; rendered as ``Bad Request: can't parse entities: ...``."""


class UnsupportedParseMode(Exception):
    pass


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _byte_offset(source: str, index: int) -> int:
    # Telegram reports markup errors at UTF-8 byte offsets.
    return len(source[:index].encode("utf-8"))


class _TextBuilder:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self.position = 0  # in UTF-16 code units

    def add(self, text: str) -> None:
        self._parts.append(text)
        self.position += utf16_len(text)

    def text(self) -> str:
        return "".join(self._parts)


@dataclass
class _OpenEntity:
    type: str
    start: int  # UTF-16 offset in the output text
    source_index: int  # index in the markup, for error messages
    attributes: dict[str, str] = field(default_factory=dict)


def _entity(type_: str, start: int, end: int, **extra: Any) -> dict[str, Any] | None:
    # Telegram silently drops empty entities.
    if end <= start:
        return None
    return {"type": type_, "offset": start, "length": end - start, **extra}


# --------------------------------------------------------------------------- HTML

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")
_TAG_NAME_CHARS = re.compile(r"[A-Za-z0-9-]*")
_ATTRIBUTE_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]*")


def _decode_html_entity(source: str, index: int) -> tuple[str, int] | None:
    match = _HTML_ENTITY.match(source, index)
    if not match:
        return None
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        decoded = _HTML_NAMED_ENTITIES.get(name)
        # Only four named entities are supported; anything else stays literal text.
        return (decoded, match.end() - index) if decoded else None
    code_point = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code_point == 0 or code_point > 0x10FFFF:
        return None
    return chr(code_point), match.end() - index


def _unescape_html(text: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        decoded = _decode_html_entity(text, index) if text[index] == "&" else None
        if decoded:
            out.append(decoded[0])
            index += decoded[1]
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _parse_html_attributes(source: str, index: int, tag: str, tag_index: int) -> tuple[dict[str, str], int]:
    """Parse attributes up to the closing '>'; returns them and the index of that '>'."""
    attributes: dict[str, str] = {}
    length = len(source)
    while True:
        while index < length and source[index].isspace():
            index += 1
        if index >= length:
            raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(source, tag_index)}")
        if source[index] == ">":
            return attributes, index
        name_match = _ATTRIBUTE_NAME_CHARS.match(source, index)
        assert name_match is not None  # the pattern is `[...]*`: it matches, if only the empty string
        name = name_match.group().lower()
        if not name:
            raise ParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(source, index)}'
            )
        index = name_match.end()
        while index < length and source[index].isspace():
            index += 1
        value = ""
        if index < length and source[index] == "=":
            index += 1
            while index < length and source[index].isspace():
                index += 1
            if index < length and source[index] in "\"'":
                quote = source[index]
                end = source.find(quote, index + 1)
                if end == -1:
                    raise ParseError(
                        f"Unclosed end of attribute value at byte offset {_byte_offset(source, index)}"
                    )
                value = source[index + 1 : end]
                index = end + 1
            else:
                start = index
                while index < length and not source[index].isspace() and source[index] != ">":
                    index += 1
                value = source[start:index]
        attributes[name] = _unescape_html(value)


def _html_entity_for(tag: _OpenEntity, end: int, parent: _OpenEntity | None) -> dict[str, Any] | None:
    name, attrs = tag.type, tag.attributes
    kind = _HTML_TAGS[name]
    if kind == "text_link":
        href = attrs.get("href", "")
        return _entity("text_link", tag.start, end, url=href) if href else None
    if kind == "pre":
        language = attrs.get("language")
        return _entity("pre", tag.start, end, **({"language": language} if language else {}))
    if kind == "code" and parent is not None and parent.type == "pre":
        language_class = attrs.get("class", "")
        if language_class.startswith("language-"):
            # <pre><code class="language-x"> sets the language of the enclosing pre block.
            parent.attributes["language"] = language_class.removeprefix("language-")
            return None
    if kind == "blockquote" and "expandable" in attrs:
        return _entity("expandable_blockquote", tag.start, end)
    if kind == "custom_emoji":
        return _entity("custom_emoji", tag.start, end, custom_emoji_id=attrs.get("emoji-id", ""))
    return _entity(kind, tag.start, end)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    out = _TextBuilder()
    stack: list[_OpenEntity] = []
    entities: list[dict[str, Any]] = []
    index, length = 0, len(source)
    while index < length:
        char = source[index]
        if char == "&":
            decoded = _decode_html_entity(source, index)
            if decoded:
                out.add(decoded[0])
                index += decoded[1]
                continue
        if char != "<":
            out.add(char)
            index += 1
            continue

        offset = _byte_offset(source, index)
        if source.startswith("</", index):
            end = source.find(">", index)
            if end == -1:
                raise ParseError(f"Unclosed end tag at byte offset {offset}")
            name = source[index + 2 : end].strip().lower()
            if not stack:
                raise ParseError(f"Unexpected end tag at byte offset {offset}")
            tag = stack.pop()
            if name != tag.type:
                raise ParseError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{tag.type}>", found "</{name}>"'
                )
            entity = _html_entity_for(tag, out.position, stack[-1] if stack else None)
            if entity:
                entities.append(entity)
            index = end + 1
            continue

        name_match = _TAG_NAME_CHARS.match(source, index + 1)
        assert name_match is not None  # the pattern is `[...]*`: it matches, if only the empty string
        name = name_match.group().lower()
        if name not in _HTML_TAGS:
            raise ParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
        attributes, end = _parse_html_attributes(source, name_match.end(), name, index)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append(_OpenEntity(name, out.position, index, attributes))
        index = end + 1

    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].type}"')
    return out.text(), entities


# --------------------------------------------------------------------------- MarkdownV2

_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKDOWN_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _is_escapable(char: str) -> bool:
    return 0 < ord(char) < 127


def _markdown_v2_closes(entity_type: str, char: str, next_char: str) -> bool:
    # Mirrors Telegram: "__" is always taken greedily as underline, never as two italics.
    return {
        "bold": char == "*",
        "italic": char == "_" and next_char != "_",
        "underline": char == "_" and next_char == "_",
        "strikethrough": char == "~",
        "spoiler": char == "|" and next_char == "|",
        "text_link": char == "]",
        "custom_emoji": char == "]",
    }.get(entity_type, False)


def _read_markdown_v2_url(source: str, index: int) -> tuple[str, int]:
    """Read ``(url)`` starting at the '(' at ``index``; ')' and '\\' must be escaped inside."""
    chars: list[str] = []
    position = index + 1
    while position < len(source):
        char = source[position]
        if char == "\\" and position + 1 < len(source) and _is_escapable(source[position + 1]):
            chars.append(source[position + 1])
            position += 2
            continue
        if char == ")":
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    raise ParseError(f"Can't find end of a URL at byte offset {_byte_offset(source, index)}")


# The two Markdown parsers are single-pass scanners: one branch per syntax character, sharing the
# scan position and the open-entity stack; split up, the state would be passed around instead.
def parse_markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:  # noqa: PLR0912, PLR0915
    out = _TextBuilder()
    stack: list[_OpenEntity] = []
    entities: list[dict[str, Any]] = []
    quote_start: int | None = None
    at_line_start = True
    index, length = 0, len(source)

    def reserved(char: str) -> ParseError:
        return ParseError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")

    while index < length:
        char = source[index]
        next_char = source[index + 1] if index + 1 < length else ""
        top = stack[-1] if stack else None

        if top is not None and top.type in ("code", "pre"):
            # Inside code only '`' and '\' are special.
            if char == "\\" and next_char and _is_escapable(next_char):
                out.add(next_char)
                index += 2
                continue
            closing = "```" if top.type == "pre" else "`"
            if source.startswith(closing, index):
                stack.pop()
                language = top.attributes.get("language")
                entity = _entity(top.type, top.start, out.position, **({"language": language} if language else {}))
                if entity:
                    entities.append(entity)
                index += len(closing)
                continue
            out.add(char)
            index += 1
            continue

        if at_line_start:
            at_line_start = False
            if char == ">":
                if quote_start is None:
                    quote_start = out.position
                index += 1
                continue
            if quote_start is not None:
                # The quote ended on the previous line; exclude its trailing newline.
                entity = _entity("blockquote", quote_start, out.position - 1)
                if entity:
                    entities.append(entity)
                quote_start = None

        if char == "\\" and next_char and _is_escapable(next_char):
            out.add(next_char)
            index += 2
            continue
        if char not in _MARKDOWN_V2_RESERVED:
            out.add(char)
            at_line_start = char == "\n"
            index += 1
            continue

        if top is not None and _markdown_v2_closes(top.type, char, next_char):
            stack.pop()
            index += 2 if top.type in ("underline", "spoiler") else 1
            if top.type in ("text_link", "custom_emoji"):
                if index < length and source[index] == "(":
                    url, index = _read_markdown_v2_url(source, index)
                    if top.type == "text_link" and url:
                        entity = _entity("text_link", top.start, out.position, url=url)
                    elif top.type == "custom_emoji" and url.startswith("tg://emoji?id="):
                        entity = _entity(
                            "custom_emoji", top.start, out.position, custom_emoji_id=url.split("=", 1)[1]
                        )
                    else:
                        entity = None
                elif top.type == "custom_emoji":
                    raise ParseError(
                        f"Custom emoji entity must contain a tg://emoji URL at byte offset "
                        f"{_byte_offset(source, top.source_index)}"
                    )
                else:
                    entity = None
            else:
                entity = _entity(top.type, top.start, out.position)
            if entity:
                entities.append(entity)
            continue

        opened_index = index
        if char == "_":
            entity_type, index = ("underline", index + 2) if next_char == "_" else ("italic", index + 1)
        elif char == "*":
            entity_type, index = "bold", index + 1
        elif char == "~":
            entity_type, index = "strikethrough", index + 1
        elif char == "|" and next_char == "|":
            entity_type, index = "spoiler", index + 2
        elif char == "[":
            entity_type, index = "text_link", index + 1
        elif char == "!" and next_char == "[":
            entity_type, index = "custom_emoji", index + 2
        elif char == "`" and source.startswith("```", index):
            entity_type, index = "pre", index + 3
        elif char == "`":
            entity_type, index = "code", index + 1
        else:
            raise reserved(char)
        opened = _OpenEntity(entity_type, out.position, opened_index)
        if entity_type == "pre":
            newline = source.find("\n", index)
            first_line = source[index:newline] if newline != -1 else ""
            if newline != -1 and not any(c.isspace() for c in first_line):
                # ```python\n...``` : the first line names the language and is not part of the text.
                if first_line:
                    opened.attributes["language"] = first_line
                index = newline + 1
        stack.append(opened)

    if quote_start is not None:
        entity = _entity("blockquote", quote_start, out.position)
        if entity:
            entities.append(entity)
    if stack:
        top = stack[-1]
        raise ParseError(
            f"Can't find end of {_MARKDOWN_V2_NAMES[top.type]} entity at byte offset "
            f"{_byte_offset(source, top.source_index)}"
        )
    return out.text(), entities


# --------------------------------------------------------------------------- Markdown (legacy)

_MARKDOWN_SIMPLE = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(source: str) -> tuple[str, list[dict[str, Any]]]:  # noqa: PLR0912, PLR0915 - as above
    """Legacy Markdown: no nesting, entity contents are literal."""
    out = _TextBuilder()
    entities: list[dict[str, Any]] = []
    index, length = 0, len(source)
    while index < length:
        char = source[index]
        if char == "\\" and index + 1 < length and source[index + 1] in "_*`[":
            out.add(source[index + 1])
            index += 2
            continue
        if char not in "_*`[":
            out.add(char)
            index += 1
            continue

        unclosed = ParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(source, index)}"
        )
        start = out.position
        if char == "[":
            close = source.find("]", index + 1)
            if close == -1:
                raise unclosed
            label = source[index + 1 : close]
            out.add(label)
            index = close + 1
            if index < length and source[index] == "(":
                url_end = source.find(")", index + 1)
                if url_end == -1:
                    raise unclosed
                url = source[index + 1 : url_end]
                entity = _entity("text_link", start, out.position, url=url) if url else None
                if entity:
                    entities.append(entity)
                index = url_end + 1
            continue
        if source.startswith("```", index):
            end = source.find("```", index + 3)
            if end == -1:
                raise unclosed
            body = source[index + 3 : end]
            language = ""
            first_line, newline, rest = body.partition("\n")
            if newline and first_line and not any(c.isspace() for c in first_line):
                language, body = first_line, rest
            out.add(body)
            entity = _entity("pre", start, out.position, **({"language": language} if language else {}))
            index = end + 3
        else:
            end = source.find(char, index + 1)
            if end == -1:
                raise unclosed
            out.add(source[index + 1 : end])
            entity = _entity(_MARKDOWN_SIMPLE[char], start, out.position)
            index = end + 1
        if entity:
            entities.append(entity)
    return out.text(), entities


# --------------------------------------------------------------------------- auto-detection

# Order matters: earlier kinds win when candidates overlap (an e-mail contains an @mention).
_AUTO_ENTITY_PATTERNS = (
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w@])")),
    ("url", re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"]+")),
    ("bot_command", re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*")),
)
_URL_TRAILING_PUNCTUATION = ".,;:!?)'\""
# Explicit entities whose text Telegram never scans for links or commands.
_OPAQUE_ENTITY_TYPES = frozenset({"code", "pre", "text_link", "custom_emoji", "url", "email", "mention"})


def detect_entities(text: str, explicit: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Entities Telegram adds on its own: URLs, e-mails, /commands, @mentions, #hashtags."""
    taken = [
        (entity["offset"], entity["offset"] + entity["length"])
        for entity in explicit or []
        if entity.get("type") in _OPAQUE_ENTITY_TYPES
    ]
    found: list[dict[str, Any]] = []
    for entity_type, pattern in _AUTO_ENTITY_PATTERNS:
        for match in pattern.finditer(text):
            matched = match.group()
            if entity_type == "url":
                matched = matched.rstrip(_URL_TRAILING_PUNCTUATION)
            start = utf16_len(text[: match.start()])
            end = start + utf16_len(matched)
            if any(start < taken_end and taken_start < end for taken_start, taken_end in taken):
                continue
            taken.append((start, end))
            found.append({"type": entity_type, "offset": start, "length": end - start})
    return sort_entities(found)


# --------------------------------------------------------------------------- entry point

_PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


def sort_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


def format_text(
    source: str, parse_mode: str | None, explicit_entities: list[dict[str, Any]] | None
) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities) the way Telegram stores a message.

    Explicit ``entities`` take precedence over ``parse_mode``, as in the Bot API.
    """
    if explicit_entities is not None:
        text, entities = source, list(explicit_entities)
    elif parse_mode:
        parser = _PARSERS.get(parse_mode.lower())
        if parser is None:
            raise UnsupportedParseMode(parse_mode)
        text, entities = parser(source)
    else:
        text, entities = source, []
    return text, sort_entities(entities + detect_entities(text, entities))
