"""Every path a user gives goes through here: checked before a command runs, explained if a loader refuses it.

Why one place: a missing file, a folder where a file belongs, a FIFO, a read-only --out, a pickle that needs code
to load or a garbage `model.safetensors` used to surface as a different traceback in each of a dozen loaders.
`check_given` refuses the wrong kinds up front (before anything is written); `explain` turns what a loader
raises later (pickle / safetensors / OS / decoding errors) into one line naming the file and the option that
gave it. The CLI's error boundary (cli.friendly) calls both; its options are found from the command's
signature (`path_options`), so a new option is checked without being listed anywhere.
"""
from __future__ import annotations

import errno
import inspect
import json
import os
import pickle
import stat
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from uae_data.core.errors import InputError
from uae_data.model_refs import looks_like_path

# Path-typed options that name a file to read; other Path-typed inputs name a folder (corpus, run, images, model),
# except the positional results (a folder or a results.json file).
FILE_OPTIONS = {"--tsv", "--metadata", "--detections", "--predictions", "--answers", "--headline", "--baseline", "MANIFESTS"}
EITHER_OPTIONS = {"RESULTS"}
OUTPUT_OPTIONS = {"--out", "--write-baseline"}
# str options that take a model (or input) as a local path or a hub name: checked when they are a local path
MODEL_OPTIONS = {"--encoder", "--decoder", "--model", "--pipeline", "--caption-model", "--input", "--init", "--judge-model"}
# manifest fields (the last part of a key=value override) that take a local path when given one
PATH_KEYS = {"checkpoint", "input", "model", "pretrained", "data", "corpus", "init", "tsv", "metadata", "encoder",
             "decoder", "reconstructions", "images", "detections", "captions", "caption_model", "csv", "prompts"}


@dataclass(frozen=True)
class PathOption:
    """One command parameter that takes a path: its Python name, the flag a user types, and what it must be."""
    name: str
    flag: str
    kind: str  # file | folder | either | output (a folder) | output-file | model | args


def _flag(name: str, default: Any) -> str:
    decls = [d for d in getattr(default, "param_decls", None) or () if d.startswith("--")]
    if type(default).__name__ == "ArgumentInfo":
        return name.upper()
    return decls[0] if decls else "--" + name.replace("_", "-")


def path_options(fn: Callable) -> list[PathOption]:
    """The parameters of a Typer command function that take paths (Path, List[Path], model-name str, the
    [MANIFEST] [key=value ...] list), with the flag each is given by."""
    target = inspect.unwrap(fn)
    hints = typing.get_type_hints(target)
    found = []
    for name, p in inspect.signature(target).parameters.items():
        tp, flag = hints.get(name), _flag(name, p.default)
        text = str(tp)
        if "Path" in text:
            kind = ("output" if name == "out_dir" else "output-file" if flag in OUTPUT_OPTIONS else "file" if flag in FILE_OPTIONS
                    else "either" if flag in EITHER_OPTIONS else "folder")
        elif name == "args" and "List[str]" in text:
            kind = "args"
        elif tp in (str, Optional[str]) and flag in MODEL_OPTIONS:
            kind = "model"
        else:
            continue
        found.append(PathOption(name, flag, kind))
    return found


def _values(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def given_paths(options: Iterable[PathOption], kwargs: dict) -> list[tuple[str, Path, str]]:
    """(option label, path, kind) for each path the user gave: options, the manifest and path-valued overrides."""
    out = []
    for opt in options:
        for v in _values(kwargs.get(opt.name)):
            if opt.kind == "args":
                text = str(v)
                if "=" not in text:
                    out.append(("MANIFEST", Path(text), "file"))
                    continue
                key, val = text.split("=", 1)
                if key.split(".")[-1].strip() in PATH_KEYS and _pathlike(val):
                    out.append((f"{key}=", Path(val).expanduser(), "model"))
            elif opt.kind == "model":
                if _pathlike(str(v)) or Path(str(v)).exists():
                    out.append((opt.flag, Path(str(v)).expanduser(), "model"))
            else:
                out.append((opt.flag, Path(v), opt.kind))
    return out


def _pathlike(text: str) -> bool:
    return "://" not in text and looks_like_path(text.strip())


def check_input(path: Path, option: str, kind: str = "either") -> None:
    """Refuse a missing path, the wrong kind (a folder for a file, a FIFO or device for either) or an unreadable
    one, in one line naming it and `option`. (Run as root, permission bits do not block reads: other means do.)"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (given with {option})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror}) (given with {option})") from None
    is_dir, is_file = stat.S_ISDIR(st.st_mode), stat.S_ISREG(st.st_mode)
    if kind == "file" and not is_file:
        what = "a folder" if is_dir else "not a regular file"
        raise InputError(f"{path}: is {what}; {option} takes a file")
    if kind == "folder" and not is_dir:
        raise InputError(f"{path}: is {'a file' if is_file else 'not a folder'}; {option} takes a folder")
    if not (is_dir or is_file):
        raise InputError(f"{path}: is not a regular file or folder (a pipe or device?); {option} takes a file or folder")
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise InputError(f"{path}: permission denied (given with {option})")


def check_output(path: Path, option: str, folder: bool = True) -> None:
    """Refuse an --out that cannot be written: a file for a folder (or the reverse), a parent that is a file,
    or a read-only or unwritable place, checked at the nearest existing parent before anything is written."""
    p = Path(path).expanduser()
    if p.exists():
        if folder and not p.is_dir():
            raise InputError(f"{p}: is a file; {option} takes a folder to write into (nothing was written)")
        if not folder and p.is_dir():
            raise InputError(f"{p}: is a folder; {option} takes a file name to write (nothing was written)")
    base = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), Path("/"))
    if not base.is_dir():
        raise InputError(f"{p}: {base} is a file, not a folder; give {option} a path under a folder (nothing was written)")
    try:
        read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise InputError(f"{p}: {base} is on a read-only file system; give {option} a writable place (nothing was written)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{p}: cannot write in {base} (permission denied); give {option} a writable place")


def check_shards(path: Path, option: str) -> None:
    """Refuse a corpus folder whose shards are not all tar files, by the first 512-byte header of each (cheap
    even for thousands of shards). Why here: a stage reads its corpus only after its step-0 evaluation, so a
    fake shard found there would leave a half-made run folder behind."""
    import tarfile

    shard_dir = path / "shards" if (path / "shards").is_dir() else path
    for shard in sorted(shard_dir.glob("*.tar")):
        with open(shard, "rb") as f:
            block = f.read(tarfile.BLOCKSIZE)
        try:
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.EOFHeaderError:
            continue  # an empty tar (a zero block): valid, holds nothing
        except tarfile.HeaderError as e:
            raise InputError(f"{shard}: not a tar shard ({e}); rebuild the corpus with `uae build-corpus` "
                             f"(given with {option})") from None


def check_given(given: list[tuple[str, Path, str]]) -> None:
    """check_input / check_output for every (option, path, kind) of `given_paths`; the shards of a corpus too."""
    for option, path, kind in given:
        if kind.startswith("output"):
            check_output(path, option, folder=kind == "output")
        else:
            check_input(path, option, "either" if kind == "model" else kind)
            if option in ("--corpus", "--data") and path.is_dir():
                check_shards(path, option)


def _refused_types() -> tuple:
    """The exception types that mean "this file cannot be used as given" (loaded lazily: no torch here)."""
    types_: list = [pickle.UnpicklingError, OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError]
    for mod, name in (("safetensors", "SafetensorError"), ("tarfile", "TarError"), ("zipfile", "BadZipFile"),
                      ("yaml", "YAMLError"), ("pyarrow", "ArrowInvalid"), ("pandas.errors", "ParserError"),
                      ("pandas.errors", "EmptyDataError")):
        try:
            types_.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types_)


def is_refusal(e: BaseException) -> bool:
    """True for the errors `explain` turns into one line (torch's zip-reader RuntimeError included)."""
    if isinstance(e, RuntimeError) and ("PytorchStreamReader" in str(e) or "zip archive" in str(e)):
        return True
    return isinstance(e, _refused_types())


def _under(child: Path, parent: Path) -> bool:
    try:
        c, p = child.resolve(), parent.resolve()
    except (OSError, RuntimeError):
        return False
    return c == p or p in c.parents


def _culprit(e: BaseException, roots: list[Path]) -> Optional[Path]:
    """The file the error is about: the OSError's own filename, else the innermost frame's local that names an
    existing path under one of the user's paths (the loaders keep the file they read in a local)."""
    name = getattr(e, "filename", None)
    if isinstance(name, (str, os.PathLike)):
        return Path(name)
    tb, frames = e.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for v in list(frame.f_locals.values()):
            if isinstance(v, (str, os.PathLike)) and 0 < len(str(v)) < 1024 and "\n" not in str(v):
                p = Path(v)
                try:
                    ok = p.is_file() and any(_under(p, r) for r in roots)
                except (OSError, ValueError):
                    ok = False
                if ok:
                    return p
    cause = e.__cause__ or e.__context__
    return _culprit(cause, roots) if cause is not None and cause is not e else None


def _reason(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    name = type(e).__name__
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
        return ("refused: a pickle that needs code to load is never run; give tensors only "
                "(safetensors, or a torch file that loads with weights_only=True)")
    if name == "SafetensorError":
        return f"not a valid safetensors file ({first})"
    if isinstance(e, EOFError):
        return "empty or cut short (a partial download or copy?)"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text (a binary or other-encoded file?)"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg}, line {e.lineno})"
    if isinstance(e, OSError) and e.errno is not None:
        return {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.ENOSPC: "disk full",
                errno.EISDIR: "is a folder where a file is expected",
                errno.ENOTDIR: "is a file where a folder is expected"}.get(e.errno, e.strerror or first)
    return f"cannot be read ({name}: {first})"


def explain(e: BaseException, given: list[tuple[str, Path, str]]) -> str:
    """One line for a refused or unreadable file: which file, why, and the option (or override) that gave it."""
    roots = [p for _, p, _ in given]
    file = _culprit(e, roots)
    options = [opt for opt, p, kind in sorted(given, key=lambda g: len(str(g[1].absolute())))
               if file is not None and (_under(file, p) or kind.startswith("output") and _under(p, file))]
    if file is None and len(given) == 1:
        file, options = given[0][1], [given[0][0]]
    where = f" (given with {options[-1]})" if options else ""
    return f"{file if file is not None else 'a file'}: {_reason(e)}{where}"


# files a run writes before its first step or item: alone, they are no progress worth keeping
SETUP_FILES = {"config.yaml"}


def fresh_outputs(given: list[tuple[str, Path, str]]) -> dict[Path, bool]:
    """{--out folder: whether it exists} for each output folder that is absent or empty before the command."""
    return {p: p.is_dir() for _, p, kind in given if kind == "output"
            and (not p.exists() or p.is_dir() and not any(p.iterdir()))}


def discard_unfinished(fresh: dict[Path, bool]) -> None:
    """After a failed command: empty each output folder it started from nothing, unless it holds progress (any
    non-empty file but config.yaml), so a failed start leaves nothing a rerun would mistake for a run."""
    import shutil

    for folder, existed in fresh.items():
        if not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*") if not p.is_dir()]
        if any(p.name not in SETUP_FILES and p.stat().st_size > 0 for p in files if p.is_file()):
            continue
        if existed:
            for p in list(folder.iterdir()):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
