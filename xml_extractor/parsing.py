"""Safe, scoped XML parsing.

Documents are parsed with no DTD, no entity resolution, no network and no recovery, and a
document that declares a DOCTYPE fails at stage parse whatever precedes it: the prolog is scanned
first (any number of byte-order marks, whitespace, comments, processing instructions) and, as the
enforcement that cannot be bypassed, every tree the parser builds is checked for a DTD node
before anything reads it (libxml2 substitutes internal entities in attribute values even with
``resolve_entities=False``, so the options alone are not enough). Only the part
of the document the contract reads is parsed: the parser is fed up to the end of the contract's
``scope`` element (``Request/CustData``) and stops there, so the large vendor payloads that follow
(``Reports``, ``Journals``: ~95% of the bytes) cost a substring search and nothing more. What is
skipped is still checked for being complete: the document must close its root element, so a
truncated row fails instead of passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from lxml import etree

from .errors import ParseFailure, ReadFailure, ValidateFailure


class NeedFullDocument(Exception):
    """The head of a document (fetched without its payload) did not settle it: fetch it whole."""


_BOM = "\ufeff"
# A multi-byte UTF-8 character: older rows in cp1252 (domain.md) hardly ever hold one (it would
# read as 'Ã©'-like pairs), so bytes that are not UTF-8 but hold these are mixed, not cp1252.
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


class UndecodableText:
    """A text column's value whose bytes are not valid UTF-8 (a SQLite TEXT value written as raw
    bytes; a SQL_ASCII PostgreSQL database). The fetch hands this on in the document's place
    instead of failing the whole batch's statement, and :func:`decode_source` fails that one
    document at stage parse. It keeps where the first bad bytes are, never any of the text."""

    __slots__ = ("offset", "bad")

    def __init__(self, offset: int, bad: bytes) -> None:
        self.offset, self.bad = offset, bad

    @classmethod
    def at(cls, raw: bytes, exc: UnicodeDecodeError) -> UndecodableText:
        """Where ``raw.decode("utf-8")`` failed (``exc``): the offset and up to 4 bad bytes."""
        return cls(exc.start, raw[exc.start : min(exc.end, exc.start + 4)])

    def reason(self) -> str:
        return f"the xml column's text is not valid UTF-8: byte(s) {self.shown()} at byte offset {self.offset}"

    def shown(self) -> str:
        return " ".join(f"0x{b:02x}" for b in self.bad)


def text_or_undecodable(raw: bytes) -> str | UndecodableText:
    """A text column's bytes -> its text, strictly UTF-8 (unlike a binary column's bytes, no
    cp1252 fallback: the database said this is text). Used as sqlite3's text_factory while
    documents are fetched and on PostgreSQL's fetched bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return UndecodableText.at(raw, exc)


class StoredBytes:
    """A document's stored bytes as the fetch read them (SQLite: ``CAST(xml AS BLOB)``), with what
    the column held: a TEXT value (``text``: strictly UTF-8, like the driver's own decoding) or a
    BLOB (UTF-8, else cp1252). Fetching bytes skips the driver's text decoding and lets
    :func:`decode_source` hand the parse valid UTF-8 bytes instead of a decoded copy."""

    __slots__ = ("raw", "text")

    def __init__(self, raw: bytes, text: bool) -> None:
        self.raw, self.text = raw, text


class Utf8Document:
    """A whole document's bytes checked to be UTF-8, read from ``start`` (past its leading
    byte-order marks, without copying): what :func:`decode_source` returns for
    :class:`StoredBytes`. :func:`parse_document` finds the scope's span in it with a byte search
    and parses only that span, never decoding the rest."""

    __slots__ = ("raw", "start")

    def __init__(self, raw: bytes, start: int = 0) -> None:
        self.raw, self.start = raw, start

    def text(self) -> str:
        """The document as text (the exact parse path and short documents' checks)."""
        return self.raw[self.start :].decode("utf-8")


def decode_tail(raw: Any) -> str:
    """The last bytes of a text column's document (the server dialects' fetch_heads): cut by byte
    count, so up to 3 leading bytes may be the end of a character; past them it must be UTF-8
    like the rest (a bad byte there fails at stage parse as in the head)."""
    raw = bytes(raw)
    start = 0
    while start < min(3, len(raw)) and 0x80 <= raw[start] <= 0xBF:
        start += 1
    text = text_or_undecodable(raw[start:])
    if isinstance(text, UndecodableText):
        raise ParseFailure(
            f"the xml column's text is not valid UTF-8: byte(s) {text.shown()} within its last {len(raw)} bytes",
            "InvalidUTF8",
        )
    return text


def decoded_tail(raw: Any, text: bool) -> str | ParseFailure:
    """A fetched tail (a document's last bytes) decoded in the fetch, one document at a time:
    ``text`` (a text column's bytes) by :func:`decode_tail`, else by :func:`decode_tail_bytes`.
    A tail that cannot be read comes back as its ParseFailure: raised in the fetch it would stop
    the whole batch (and the worker) over one document's bytes; :func:`decode_head_and_tail`
    sends that document to be read whole instead, where its reason names the byte's offset."""
    try:
        return decode_tail(raw) if text else decode_tail_bytes(raw)
    except ParseFailure as failure:
        return failure


def decode_head_and_tail(
    head: Any, tail: Any, min_length: int = 1
) -> tuple[str | Utf8Document, str]:
    """A fetched head (the document up to the scope's end marker) and tail (its last bytes,
    decoded by the fetch or not yet), decoded. The head's bytes follow the whole document's rules
    and reasons (the head is where a whole read meets its first bad byte), but the head is only
    part of the document: whatever it and the tail cannot settle as the whole would (a head
    shorter than ``min_length``, a tail that is not text) raises NeedFullDocument, and the
    whole document decides."""
    text = decode_source(head, 1)  # never empty: it ends with the marker
    if min_length > 1 and not _at_least(text, min_length):
        raise NeedFullDocument()
    if not isinstance(tail, (str, ParseFailure)):
        tail = decoded_tail(tail, True)  # PostgreSQL sends a text column's bytes
    if isinstance(tail, ParseFailure):
        raise NeedFullDocument()
    return text, tail


def _at_least(text: str | Utf8Document, n: int) -> bool:
    """Does the decoded head hold ``n`` characters once stripped (decode_source's emptiness
    check)? A UTF-8 head that starts with a visible ASCII character and ends with the marker
    strips nothing, and holds at least a character per 4 bytes."""
    if isinstance(text, Utf8Document):
        raw, start = text.raw, text.start
        if len(raw) - start >= 4 * n and _ASCII_VISIBLE.match(raw, start):
            return True
        text = text.text()
    return len(text.strip()) >= n


def decode_tail_bytes(raw: Any) -> str:
    """The last bytes of a document fetched as bytes from a column that holds bytes, not text (SQL
    Server varchar/varbinary: UTF-8 rows and older cp1252 ones), read as :func:`decode_source`
    reads the whole: UTF-8 (up to 3 leading bytes may end a character the byte count cut), else
    cp1252, unless UTF-8 characters stand beside the bad byte (mixed: InvalidUTF8 at parse)."""
    raw = bytes(raw)
    start = 0
    while start < min(3, len(raw)) and 0x80 <= raw[start] <= 0xBF:
        start += 1
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if _UTF8_SEQUENCE.search(raw):
            bad = UndecodableText.at(raw[start:], exc)
            raise ParseFailure(
                f"the xml column's text is not valid UTF-8: byte(s) {bad.shown()} within its last {len(raw)} "
                "bytes (the rest holds UTF-8 characters: not read as cp1252, which would change them)",
                "InvalidUTF8",
            ) from None
        return raw.decode("cp1252") if _cp1252_ok(raw) else raw.decode("latin-1")


@overload
def decode_source(value: StoredBytes, min_length: int = 1) -> str | Utf8Document: ...


@overload
def decode_source(value: str | bytes | bytearray | memoryview, min_length: int = 1) -> str: ...


@overload
def decode_source(value: Any, min_length: int = 1) -> Any: ...


def decode_source(value: Any, min_length: int = 1) -> Any:
    """Row value -> text. Bytes are UTF-8, else cp1252 (older rows); leading byte-order marks are
    dropped (any number of them: re-encoded exports stack them). A text column's value that is
    not UTF-8 (:class:`UndecodableText`) fails at stage parse. :class:`StoredBytes` that are UTF-8
    come back as :class:`Utf8Document` (the same rules, the bytes left undecoded)."""
    if isinstance(value, StoredBytes):
        return _decode_stored(value, min_length)
    if value is None:
        raise ReadFailure("the xml column is NULL", "EmptyDocument")
    if isinstance(value, UndecodableText):
        raise ParseFailure(value.reason(), "InvalidUTF8")
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        while raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if _UTF8_SEQUENCE.search(
                raw
            ):  # UTF-8 characters beside a byte that is not: mixed, not cp1252
                raise ParseFailure(
                    UndecodableText.at(raw, exc).reason()
                    + " (the rest holds UTF-8 characters: not read as cp1252, "
                    "which would change them)",
                    "InvalidUTF8",
                ) from None
            text = (
                raw.decode("cp1252", errors="strict") if _cp1252_ok(raw) else raw.decode("latin-1")
            )
    else:
        text = str(value)
    if text.startswith(_BOM):
        text = text.lstrip(_BOM)
    need = max(min_length, 1)
    # strip() copies the whole text: on a 150 KB document look at the head first
    if (len(text) < 8192 or not text[:4096].strip()) and len(text.strip()) < need:
        raise ReadFailure(
            f"the xml column is empty or too short ({len(text)} characters, at least {max(min_length, 1)} needed)",
            "EmptyDocument",
        )
    return text


_UTF8_BOM = b"\xef\xbb\xbf"
_ASCII_VISIBLE = re.compile(rb"[!-~]")


def _decode_stored(value: StoredBytes, min_length: int) -> str | Utf8Document:
    """:func:`decode_source` of fetched bytes. UTF-8 ones (checked by ``isascii`` or a decode whose
    text is dropped) stay bytes; any other value takes the path of the value the driver would
    have given (a TEXT column's :class:`UndecodableText`, a BLOB's bytes), so the rules and the
    reasons are those of :func:`decode_source` by construction."""
    raw = value.raw
    start = 0
    while raw.startswith(_UTF8_BOM, start):
        start += 3
    if not is_utf8(raw):  # its byte-order marks are UTF-8 too
        return decode_source(text_or_undecodable(raw) if value.text else raw, min_length)
    doc = Utf8Document(raw, start)
    # the emptiness check of decode_source: settled on the bytes when the document is surely long
    # (4 bytes at most a character) and its head holds a visible ASCII character; else on the text
    if len(raw) - start < 4 * 8192 or not _ASCII_VISIBLE.search(raw, start, start + 4096):
        decode_source(doc.text(), min_length)
    return doc


def is_utf8(raw: bytes) -> bool:
    """Are these bytes UTF-8 (``isascii`` first: most documents are; else a decode whose text is
    dropped)?"""
    if raw.isascii():
        return True
    try:
        str(raw, "utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _cp1252_ok(raw: bytes) -> bool:
    try:
        raw.decode("cp1252")
        return True
    except UnicodeDecodeError:
        return False


@dataclass
class ParsedDocument:
    """The root element (a partial tree up to the scope's end) and the document's own ID."""

    root: Any
    document_id: str | None
    record: Any


@dataclass(frozen=True)
class DocumentPlan:
    root: str
    id_steps: tuple[str, ...]
    id_attribute: str
    record_steps: tuple[str, ...]
    scope_steps: tuple[str, ...]
    huge_tree: bool = False

    @property
    def record_path(self) -> str:
        return "/" + "/".join((self.root,) + self.record_steps)


_PARSER_OPTIONS = {
    "resolve_entities": False,
    "load_dtd": False,
    "no_network": True,
    "dtd_validation": False,
    "recover": False,
    "remove_comments": True,
    "remove_pis": True,
    "encoding": "utf-8",
}


_DTD_FORBIDDEN = "a DOCTYPE/DTD is not allowed in documents (entities are never expanded)"


def _check_prolog(text: str) -> None:
    """Refuse any DOCTYPE before parsing: no DTD means no entity declarations to expand, ever.
    Byte-order marks, whitespace, comments and processing instructions are skipped, any number
    and in any order; anything else ends the prolog (the parser judges it, and :func:`_refuse_dtd`
    checks what it built)."""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n\ufeff":
            i += 1
        if text.startswith("<?", i):
            j = text.find("?>", i)
            i = n if j < 0 else j + 2
        elif text.startswith("<!--", i):
            j = text.find("-->", i)
            i = n if j < 0 else j + 3
        elif text.startswith("<!", i):
            if text[i : i + 9].upper() == "<!DOCTYPE":
                raise ParseFailure(_DTD_FORBIDDEN, "DTDForbidden")
            return
        else:
            return


_PROLOG_SPACE = frozenset(b" \t\r\n")


def _check_prolog_bytes(raw: bytes, i: int) -> None:
    """:func:`_check_prolog` on UTF-8 bytes from offset ``i`` (the byte-order mark is 3 bytes; the
    rest of what the prolog may hold is ASCII)."""
    n = len(raw)
    while i < n:
        while i < n:
            if raw[i] in _PROLOG_SPACE:
                i += 1
            elif raw.startswith(_UTF8_BOM, i):
                i += 3
            else:
                break
        if raw.startswith(b"<?", i):
            j = raw.find(b"?>", i)
            i = n if j < 0 else j + 2
        elif raw.startswith(b"<!--", i):
            j = raw.find(b"-->", i)
            i = n if j < 0 else j + 3
        elif raw.startswith(b"<!", i):
            # the next 9 characters (36 bytes hold at least 9), compared as _check_prolog does
            if str(raw[i : i + 36], "utf-8", "ignore")[:9].upper() == "<!DOCTYPE":
                raise ParseFailure(_DTD_FORBIDDEN, "DTDForbidden")
            return
        else:
            return


def _refuse_dtd(root: Any, source: bytes | None = None) -> None:
    """The enforcement: a tree whose document has a DTD node (any DOCTYPE, however it got past
    the prolog scan) or holds an entity reference is refused before anything reads a value.
    ``source``: the bytes the tree was parsed from; without an ``&`` in them no node can be an
    entity reference, and the walk over the tree looking for one is skipped."""
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.externalDTD is not None:
        raise ParseFailure(_DTD_FORBIDDEN, "DTDForbidden")
    if source is not None and b"&" not in source:
        return
    if next(root.iter(etree.Entity), None) is not None:
        raise ParseFailure(
            "the document holds an entity reference (entities are never expanded)", "DTDForbidden"
        )


def parse_document(
    text: str | Utf8Document, plan: DocumentPlan, tail: str | None = None
) -> ParsedDocument:
    """Parse what the contract reads; raise ParseFailure / ValidateFailure with a usable reason.

    Fast path: the text up to the first ``</CustData>`` plus the closing tags of its ancestors
    (``</Request></Provenir>``) is parsed as one small document. That only succeeds when the
    marker really closes ``Request/CustData`` (a marker in a comment, CDATA or a nested element
    makes the synthetic document malformed or the record missing); otherwise, and for every
    error, the exact event-driven path below decides.

    A :class:`Utf8Document` takes the same steps on its bytes (:func:`_parse_utf8`).

    With ``tail`` (the last characters of the document), ``text`` is only the document's head up
    to the scope's end marker, as the server dialects fetch it; whatever the fast path cannot
    settle raises NeedFullDocument."""
    if isinstance(text, Utf8Document):
        return _parse_utf8(text, plan, tail)
    if "\x00" in text:  # the head first: a NUL in both (a short document) has its offset
        raise ParseFailure(
            f"the document contains a NUL character at offset {text.index(chr(0))}", "NulCharacter"
        )
    if tail is not None and "\x00" in tail:
        raise NeedFullDocument()  # read whole, its offset is said
    _check_prolog(text)
    marker = f"</{plan.scope_steps[-1]}>"
    cut = text.find(marker)
    if cut >= 0:
        whole = text
        parsed = _parse_span(
            text[: cut + len(marker)].encode("utf-8"),
            plan,
            lambda: tail if tail is not None else whole[-200:],
            head_only=tail is not None,
        )
        if parsed is not None:
            return parsed
    if tail is not None:
        raise NeedFullDocument()
    return _parse_with_events(text, plan)


def _parse_utf8(doc: Utf8Document, plan: DocumentPlan, tail: str | None = None) -> ParsedDocument:
    """:func:`parse_document` on a document's UTF-8 bytes: the NUL scan, the prolog check and the
    search for the scope's end run on the bytes, the span up to it is parsed as it is, and only
    the exact path (a span that does not settle the document) decodes the whole. With ``tail``
    the bytes are only the document's head (SQLite's blob read) and the checks are those of a
    head in :func:`parse_document`."""
    raw, start = doc.raw, doc.start
    nul = raw.find(b"\x00", start)
    if nul >= 0:
        offset = len(str(memoryview(raw)[start:nul], "utf-8"))  # in characters, as for text
        raise ParseFailure(
            f"the document contains a NUL character at offset {offset}", "NulCharacter"
        )
    if tail is not None and "\x00" in tail:
        raise NeedFullDocument()  # read whole, its offset is said
    _check_prolog_bytes(raw, start)
    marker = f"</{plan.scope_steps[-1]}>".encode()
    cut = raw.find(marker, start)
    if cut >= 0:
        parsed = _parse_span(
            raw[start : cut + len(marker)],
            plan,
            (lambda: tail) if tail is not None else (lambda: _last_characters(raw, start, 200)),
            head_only=tail is not None,
        )
        if parsed is not None:
            return parsed
    if tail is not None:
        raise NeedFullDocument()
    return _parse_with_events(doc.text(), plan)


def _last_characters(raw: bytes, start: int, n: int) -> str:
    """The last ``n`` characters of valid UTF-8 ``raw[start:]``, decoding at most 4n bytes."""
    at = max(start, len(raw) - 4 * n)
    if at > start:
        while at < len(raw) and 0x80 <= raw[at] <= 0xBF:  # inside a character: skip to its end
            at += 1
    return str(memoryview(raw)[at:], "utf-8")[-n:]


def _parse_span(
    head: bytes, plan: DocumentPlan, end_text: Callable[[], str], head_only: bool = False
) -> ParsedDocument | None:
    """The fast path: ``head`` (up to the scope's end marker) closed by the ancestors' end tags,
    parsed as one small document. None when that does not settle the document (the exact path
    decides); a document that does not end with the root's end tag (``end_text()``: its last
    200 characters) is truncated. ``head_only``: ``end_text()`` is a fetched tail, its last 200
    bytes, which may hold fewer characters: a tail that does not show the end tag sends the
    document to be read whole (NeedFullDocument), where the 200 characters decide."""
    try:
        root = etree.fromstring(head + _closing_tags(plan), _fast_parser(plan.huge_tree))
    except etree.XMLSyntaxError:
        return None
    _refuse_dtd(root, head)
    if root.tag != plan.root:
        return None
    record = _find(root, plan.record_steps)
    if record is None:
        return None
    if not _TAIL_CACHE.setdefault(
        plan.root, re.compile(rf"</{re.escape(plan.root)}\s*>\s*$")
    ).search(end_text()):
        if head_only:
            raise NeedFullDocument()
        raise ParseFailure(
            f"the document is incomplete: it does not end with </{plan.root}> (truncated?)",
            "TruncatedDocument",
        )
    return ParsedDocument(root=root, document_id=_find_id(root, plan), record=record)


def _closing_tags(plan: DocumentPlan) -> bytes:
    """``</Request></Provenir>``: the end tags of the scope's ancestors, innermost first."""
    return "".join(f"</{t}>" for t in reversed((plan.root,) + plan.scope_steps[:-1])).encode()


_TAIL_CACHE: dict[str, re.Pattern[str]] = {}
_FAST: dict[bool, Any] = {}


def _fast_parser(huge: bool) -> Any:
    p = _FAST.get(huge)
    if p is None:
        p = _FAST[huge] = etree.XMLParser(huge_tree=huge, **_PARSER_OPTIONS)
    return p


def _parse_with_events(text: str, plan: DocumentPlan) -> ParsedDocument:
    """The exact path: feed up to the end of the scope, follow the element stack, stop there."""
    parser = etree.XMLPullParser(
        events=("start", "end"), huge_tree=plan.huge_tree, **_PARSER_OPTIONS
    )
    scope_depth = len(plan.scope_steps) + 1  # root is depth 1
    scope_tag = plan.scope_steps[-1]
    marker = f"</{scope_tag}>"
    cut = text.find(marker)
    pieces = [text] if cut < 0 else [text[: cut + len(marker)], text[cut + len(marker) :]]
    stack: list[str] = []
    root = None
    done = False
    try:
        for k, piece in enumerate(pieces):
            parser.feed(piece.encode("utf-8"))
            for event, el in parser.read_events():
                if event == "start":
                    stack.append(el.tag)
                    if root is None:
                        root = el
                        _refuse_dtd(
                            el
                        )  # the DOCTYPE, if any, came before the root: refuse it first
                        if el.tag != plan.root:
                            raise ValidateFailure(
                                f"root element is <{el.tag}>, expected <{plan.root}>", "WrongRoot"
                            )
                else:
                    if len(stack) == scope_depth and tuple(stack[1:]) == plan.scope_steps:
                        done = True
                        break
                    stack.pop()
            if done:
                # the rest of the document after the scope: the second piece, or (a self-closing
                # scope such as <CustData/> has no end marker: one piece) the whole text
                tail = (text[cut + len(marker) :] if cut >= 0 else text) if k == 0 else ""
                if k == 0 and not re.search(rf"</{re.escape(plan.root)}\s*>\s*$", tail[-200:]):
                    raise ParseFailure(
                        f"the document is incomplete: it does not end with </{plan.root}> (truncated?)",
                        "TruncatedDocument",
                    )
                break
        if not done:
            parser.close()
    except etree.XMLSyntaxError as exc:
        if "XML_PARSE_HUGE" in str(exc) and not plan.huge_tree:  # well-formed, over a limit
            raise ParseFailure(
                f"the document is over a libxml2 resource limit ({str(exc).splitlines()[0]}): "
                'set "huge_tree": true in the contract\'s "document" section to lift it',
                "ResourceLimit",
            ) from None
        raise ParseFailure(f"malformed XML: {exc}", "XMLSyntaxError") from None
    if root is None:
        raise ParseFailure("no root element", "XMLSyntaxError")
    _refuse_dtd(root)
    return ParsedDocument(
        root=root, document_id=_find_id(root, plan), record=_find(root, plan.record_steps)
    )


def _find(root: Any, steps: tuple[str, ...]) -> Any:
    el = root
    for step in steps:
        el = el.find(step)
        if el is None:
            return None
    return el


def _find_id(root: Any, plan: DocumentPlan) -> str | None:
    holder = _find(root, plan.id_steps)
    if holder is None:
        return None
    value = holder.get(plan.id_attribute)
    if value is None:
        wanted = plan.id_attribute.lower()
        for k, v in holder.attrib.items():
            if k.lower() == wanted:
                value = v
                break
    return value.strip() if value is not None else None


def parse_app_id(document_id: str | None, plan: DocumentPlan) -> int:
    """The document's ID as an integer, or a ValidateFailure saying what is wrong."""
    path = "/" + "/".join((plan.root,) + plan.id_steps) + "/@" + plan.id_attribute
    if not document_id:
        raise ValidateFailure(f"no {path} in the document", "MissingId")
    if not re.fullmatch(
        r"-?[0-9]+", document_id
    ):  # ASCII digits only: int() would also take '+12' and '٣'
        raise ValidateFailure(f"{path} is {document_id[:40]!r}, not an integer", "BadId")
    return int(document_id)
