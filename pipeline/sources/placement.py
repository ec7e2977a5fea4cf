"""Where OUT may not be: an input folder, or the folder an input file (or a manifest item) lies in.

Compares folders by name and on disk only; reads no file's content and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.sources.documents import printable_path


def same_place(folder: Path, out_dir: Path) -> bool:
    """The same folder, by name (absolute or resolved) or on disk (a symlinked, bind-mounted or case-folded path)."""
    if {Path(os.path.abspath(folder)), folder.resolve()} & {Path(os.path.abspath(out_dir)), out_dir.resolve()}:
        return True
    try:
        return os.path.samefile(folder, out_dir)
    except OSError:  # OUT does not exist yet: it cannot hold anything
        return False


def same_folder_error(out_dir: Path, what: str) -> UsageError:
    return UsageError(f"the output folder {printable_path(out_dir)} is {what}: an output could replace an input "
                      "there (audiosum never writes next to its inputs); choose another -o")


def check_beside(path: Path, out_dir: Path, what: str) -> None:
    """UsageError (naming `what`) when OUT is the folder path lies in, as given or with symlinks resolved."""
    if same_place(Path(os.path.abspath(path)).parent, out_dir) or same_place(path.resolve().parent, out_dir):
        raise same_folder_error(out_dir, what)


def check_input_file(raw: str, out_dir: Path) -> None:
    """UsageError when OUT is the folder of this input file (a document, a recording, a manifest or a feed file)."""
    check_beside(Path(raw), out_dir, f"the folder of the input {printable_path(raw)}")
