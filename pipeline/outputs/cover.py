"""The podcast's artwork as directories take it (square, 1400-3000 px, JPEG or PNG, RGB): the user's own image,
checked and, where it breaks a rule, conformed; else a cover drawn from the podcast's title.

Makes image bytes and names only; never writes a file (podcast.build writes them into OUT through atomic_write).
"""

from __future__ import annotations

import functools
import hashlib
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

MIN_PX, MAX_PX = 1400, 3000  # Apple Podcasts' bounds; Spotify, Pocket Casts and Overcast take the same square
COVER_PX = 1400  # a drawn cover: the smallest size every directory takes is also the smallest file
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a user's image larger than this is not read (a 3000 px PNG is ~25 MB at most)
FORMATS = {"JPEG": "jpg", "PNG": "png"}
COVER_STEM = "podcast-cover"  # OUT/podcast-cover.png or .jpg; no document's output ends in .png or .jpg

# Background colours for drawn covers, each with white text at a WCAG contrast of at least 7:1.
_BACKGROUNDS = ((0x1B, 0x3A, 0x5C), (0x5C, 0x1B, 0x2E), (0x1E, 0x4D, 0x2B), (0x3D, 0x1F, 0x5C), (0x5C, 0x33, 0x0A),
                (0x14, 0x45, 0x4F), (0x26, 0x26, 0x26))
_TEXT = (0xFF, 0xFF, 0xFF)
_MARGIN = 0.09  # of the side, around the text
_MAX_LINES = 4
# Font sizes (px at 1400) tried from the largest down. The smallest keeps a capital about 5 px tall at 60 px.
_SIZES = (360, 320, 280, 240, 210, 180, 160)
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """What a user's image is, read from its header, and the directory rules it breaks."""

    format: str | None
    width: int
    height: int
    mode: str | None
    problems: tuple[str, ...]
    usable: bool  # False: not an image audiosum can read (missing, too large, not an image): a cover is drawn


@dataclass(frozen=True, slots=True)
class Artwork:
    """The channel's image: its file name in OUT, what was wrong with the user's image, and how to make its bytes."""

    name: str  # podcast-cover.png or podcast-cover.jpg (the feed's URL carries a hash of the bytes)
    problems: tuple[str, ...]  # the rules the user's image broke (it was conformed), or why it was unusable
    user_image: Path | None  # the user's image the file is made from; None: drawn from the title
    title: str

    @property
    def drawn_instead(self) -> bool:
        """The user gave an image that could not be used: the cover is drawn from the title."""
        return self.user_image is None and bool(self.problems)

    def data(self) -> bytes:
        if self.user_image is not None:
            made = user_image_bytes(self.user_image)
            if made is not None:
                return made
        # Drawn, or a user's image whose header read but whose body did not: still the format the name says.
        return drawn_cover(self.title, as_jpeg=self.name.endswith(".jpg"))


def artwork(image: str | None, title: str) -> Artwork:
    """The channel image for a user's `image` (a path) or, without one or when it cannot be read, a cover drawn from
    `title`."""
    if not image:
        return Artwork(f"{COVER_STEM}.png", (), None, title)
    path = Path(image).expanduser()
    checked = check_image(path)
    if not checked.usable:
        return Artwork(f"{COVER_STEM}.png", checked.problems, None, title)
    extension = "jpg" if checked.format == "JPEG" else "png"  # conforming keeps JPEG, and makes the rest PNG
    return Artwork(f"{COVER_STEM}.{extension}", checked.problems, path, title)


def check_image(path: Path) -> ImageCheck:
    """The rules `path` breaks: square, MIN_PX..MAX_PX, JPEG or PNG, RGB. Reads only the header."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return ImageCheck(None, 0, 0, None, (f"it is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB",), False)
        with Image.open(path) as image:
            found = (image.format, image.width, image.height, image.mode)
    except FileNotFoundError:
        return ImageCheck(None, 0, 0, None, ("there is no such file",), False)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return ImageCheck(None, 0, 0, None, ("it is not an image Pillow can read",), False)
    except OSError as exc:
        return ImageCheck(None, 0, 0, None, (f"it cannot be read ({exc.strerror or exc})",), False)
    image_format, width, height, mode = found
    problems = []
    if image_format not in FORMATS:
        problems.append(f"it is {image_format or 'an unknown format'}, not JPEG or PNG")
    if width != height:
        problems.append(f"it is {width}x{height}, not square")
    if min(width, height) < MIN_PX or max(width, height) > MAX_PX:
        problems.append(f"it is {width}x{height} px, outside {MIN_PX}-{MAX_PX} px")
    if mode != "RGB":
        problems.append(f"its colour mode is {mode}, not RGB")
    return ImageCheck(image_format, width, height, mode, tuple(problems), True)


def user_image_bytes(path: Path) -> bytes | None:
    """The user's image as published: its own bytes when it keeps every rule, else a conformed copy (RGB, padded
    to a square with its corner colour, scaled into MIN_PX..MAX_PX; JPEG stays JPEG, anything else becomes PNG).
    None when it is not a readable image."""
    checked = check_image(path)
    if not checked.usable:
        return None
    try:
        data = path.read_bytes()
        if not checked.problems:
            return data
        with Image.open(io.BytesIO(data)) as opened:
            conformed = _conformed(ImageOps.exif_transpose(opened))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None
    return _encoded(conformed, as_jpeg=checked.format == "JPEG")


def _conformed(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))  # transparency shown as apps show it on white
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    side = max(image.width, image.height)
    if image.width != image.height:
        # Padding, not cropping: cover art often carries its title near an edge.
        corner = image.getpixel((0, 0))
        square = Image.new("RGB", (side, side), corner if isinstance(corner, tuple) else (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = square
    target = min(MAX_PX, max(MIN_PX, side))
    if target != side:
        image = image.resize((target, target), Image.Resampling.LANCZOS)
    return image


def _encoded(image: Image.Image, as_jpeg: bool) -> bytes:
    buffer = io.BytesIO()
    if as_jpeg:
        image.save(buffer, "JPEG", quality=90, optimize=True)
    else:
        image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def drawn_cover(title: str, *, as_jpeg: bool = False) -> bytes:
    """A COVER_PX square PNG: the title in large bold white type on a dark colour picked from the title, sized to
    stay legible as a 60 px thumbnail (the size podcast apps list shows at)."""
    background = _BACKGROUNDS[hashlib.sha256(title.encode()).digest()[0] % len(_BACKGROUNDS)]
    image = Image.new("RGB", (COVER_PX, COVER_PX), background)
    draw = ImageDraw.Draw(image)
    width = int(COVER_PX * (1 - 2 * _MARGIN))
    face = _face_for(" ".join(title.split()))
    lines, font, stroke, size = _fitted(draw, face, width)
    spacing = int(size * 0.18)
    block = draw.multiline_textbbox((0, 0), "\n".join(lines), font=font, spacing=spacing, stroke_width=stroke)
    x = (COVER_PX - (block[2] - block[0])) // 2 - block[0]
    y = (COVER_PX - (block[3] - block[1])) // 2 - block[1]
    draw.multiline_text((x, y), "\n".join(lines), font=font, fill=_TEXT, spacing=spacing, align="center",
                        stroke_width=stroke, stroke_fill=_TEXT)
    # A band along the bottom: the cover reads as art, not a blank tile, even when the title is one short word.
    band = int(COVER_PX * 0.035)
    draw.rectangle((0, COVER_PX - band, COVER_PX, COVER_PX), fill=_TEXT)
    return _encoded(image, as_jpeg)


# Bold faces with wide coverage, looked for by file name where the system keeps fonts (Pillow searches the usual
# folders of Linux, macOS and Windows); without any, the face Pillow bundles, which has ASCII letters only.
FONT_FILES = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "NotoSans-Bold.ttf", "Arial Bold.ttf",
              "arialbd.ttf", "NotoSansCJK-Bold.ttc")
# What a face without the character can show instead (after dropping accents: "é" reads "e").
_PLAIN = {"\u2014": "-", "\u2013": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
          "\u2026": "...", "\u00df": "ss", "\u0141": "L", "\u0142": "l", "\u00d8": "O", "\u00f8": "o",
          "\u00c6": "AE", "\u00e6": "ae", "\u20ac": "EUR"}


@dataclass(frozen=True, slots=True)
class _Face:
    file: str | None  # a font file FONT_FILES names; None: Pillow's bundled face
    text: str  # the title as this face can draw it

    def font(self, size: int) -> _Font:
        return ImageFont.truetype(self.file, size) if self.file else ImageFont.load_default(size=size)

    def stroke(self, size: int) -> int:
        # The bundled face is regular weight: a stroke of its own colour makes it bold.
        return 0 if self.file else max(2, size // 30)


@functools.cache
def installed_fonts() -> tuple[str, ...]:
    """The FONT_FILES this machine has, in that order."""
    found = []
    for name in FONT_FILES:
        try:
            ImageFont.truetype(name, 20)
        except OSError:
            continue
        found.append(name)
    return tuple(found)


def cover_text(title: str) -> str:
    """The title as a drawn cover shows it, in the face it is drawn in."""
    return _face_for(" ".join(title.split())).text


def _face_for(title: str) -> _Face:
    """The first face that draws every character of the title; else the first there is, with what it cannot draw
    spelled plainly or left out (a box for a missing glyph reads as a fault, not as a title)."""
    files: list[str | None] = [*installed_fonts(), None]
    for file in files:
        if not _missing(file, title):
            return _Face(file, title or "audiosum")
    file = files[0]
    missing = _missing(file, title)
    shown = "".join(_plain(char, file) if char in missing else char for char in title)
    return _Face(file, " ".join(shown.split()) or "audiosum")


def _plain(char: str, file: str | None) -> str:
    spelled = _PLAIN.get(char) or "".join(c for c in unicodedata.normalize("NFKD", char)
                                          if not unicodedata.combining(c))
    return "" if not spelled or _missing(file, spelled) else spelled


def _missing(file: str | None, text: str) -> set[str]:
    """The characters of `text` the face has no glyph for: they draw as its placeholder box."""
    return {char for char in set(text) if not char.isspace() and _glyph(file, char) == _glyph(file, "\uffff")}


@functools.lru_cache(maxsize=4096)
def _glyph(file: str | None, char: str) -> bytes:
    font = ImageFont.truetype(file, 40) if file else ImageFont.load_default(size=40)
    image = Image.new("L", (80, 80))
    ImageDraw.Draw(image).text((10, 10), char, font=font, fill=255)
    return image.tobytes()


def _fitted(draw: ImageDraw.ImageDraw, face: _Face, width: int) -> tuple[list[str], _Font, int, int]:
    """(lines, font, stroke, size): the largest size at which the title wraps into at most _MAX_LINES lines of
    `width` px without breaking a word; at the smallest size words are broken where they must be and the last line
    ends in an ellipsis, rather than the type shrinking below thumbnail legibility."""
    text = face.text
    for size in _SIZES:
        font, stroke = face.font(size), face.stroke(size)
        fits_whole = not any(_too_wide(draw, word, font, stroke, width) for word in text.split(" "))
        lines = _wrapped(draw, text, font, stroke, width)
        if fits_whole and len(lines) <= _MAX_LINES:
            return lines, font, stroke, size
    if len(lines) <= _MAX_LINES:
        return lines, font, stroke, size
    kept = lines[:_MAX_LINES]
    ellipsis = "\u2026" if not _missing(face.file, "\u2026") else "..."
    while kept[-1] and _too_wide(draw, kept[-1] + ellipsis, font, stroke, width):
        kept[-1] = kept[-1][:-1].rstrip()
    kept[-1] += ellipsis
    return kept, font, stroke, size


def _too_wide(draw: ImageDraw.ImageDraw, line: str, font: _Font, stroke: int, width: int) -> bool:
    box = draw.textbbox((0, 0), line, font=font, stroke_width=stroke)
    return box[2] - box[0] > width


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font: _Font, stroke: int, width: int) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than a line is broken where it must be."""
    lines: list[str] = []
    for word in text.split(" "):
        for piece in _broken(draw, word, font, stroke, width):
            candidate = f"{lines[-1]} {piece}" if lines else piece
            if lines and not _too_wide(draw, candidate, font, stroke, width):
                lines[-1] = candidate
            else:
                lines.append(piece)
    return lines


def _broken(draw: ImageDraw.ImageDraw, word: str, font: _Font, stroke: int, width: int) -> list[str]:
    """`word` in pieces that each fit `width` (one piece when it fits whole)."""
    if not _too_wide(draw, word, font, stroke, width):
        return [word]
    pieces = [""]
    for char in word:
        if pieces[-1] and _too_wide(draw, pieces[-1] + char, font, stroke, width):
            pieces.append("")
        pieces[-1] += char
    return pieces
