"""Zip-based documents (.docx, .pptx, .odt, .epub) opened with caps on entries, unpacked size and compression ratio.

Must not unpack anything before the caps pass, nor a member past its declared size; it knows no format's content.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from urllib.parse import unquote

from pipeline.errors import DocumentError, first_line
from pipeline.sources import xmlguard

MAX_ENTRIES = 5000
MAX_UNPACKED_BYTES = 128 * 1024 * 1024
# Deflate squeezes text 3-20 times and XML up to ~60; a member over 1 MiB packed tighter than this is a bomb.
MAX_RATIO = 100
RATIO_FROM_BYTES = 1024 * 1024
XML_SUFFIXES = (".xml", ".rels", ".opf", ".ncx", ".xhtml", ".htm", ".html")


class Package:
    """The members of one zip-based document, each read at most once its declared size."""

    def __init__(self, data: bytes, what: str) -> None:
        self.what = what
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except zipfile.BadZipFile as exc:
            raise DocumentError(f"the {what} is not a zip file, or a damaged one ({first_line(exc)})") from exc
        except (OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise DocumentError(f"damaged {what}: its zip directory cannot be read ({first_line(exc)})") from exc
        if len(infos) > MAX_ENTRIES:
            raise DocumentError(f"refused: the {what} holds {len(infos)} zip entries, over the {MAX_ENTRIES} limit")
        total = sum(info.file_size for info in infos)
        if total > MAX_UNPACKED_BYTES:
            raise DocumentError(f"refused: the {what} unpacks to {total} bytes, over the {MAX_UNPACKED_BYTES}-byte "
                                "limit (a zip bomb?)")
        for info in infos:
            if info.file_size > RATIO_FROM_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise DocumentError(f"refused: {info.filename!r} in the {what} is compressed "
                                    f"{info.file_size // max(info.compress_size, 1)}:1, over the {MAX_RATIO}:1 limit "
                                    "(a zip bomb?)")
        self._infos = {info.filename: info for info in infos}

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def has(self, name: str) -> bool:
        return name in self._infos

    def read(self, name: str) -> bytes:
        """A member's bytes (zipfile stops at the declared size and checks the CRC); damage is a DocumentError."""
        info = self._infos.get(name)
        if info is None:
            raise DocumentError(f"damaged {self.what}: {name!r} is missing")
        if info.flag_bits & 0x1:
            raise DocumentError(f"the {self.what} is encrypted ({name!r} needs a password)")
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise DocumentError(f"damaged {self.what}: {name!r} cannot be unpacked ({first_line(exc)})") from exc

    def check_xml(self) -> None:
        """Refuse the package when any XML member declares an entity (the bomb and the file-reading kinds)."""
        for name in self._infos:
            if name.lower().endswith(XML_SUFFIXES):
                xmlguard.refuse_entities(self.read(name), f"{name!r} in the {self.what}")


def member_path(base: str, href: str) -> str:
    """The member an href names, relative to the member `base` it appears in ("" for the root); no fragment."""
    target = unquote(href.split("#", 1)[0])
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target)).lstrip("/")
