"""The official DPG-Bench files: `dpg_bench.csv` (one row per question) and `prompts/<item_id>.txt`.

Read as ELLA's `prepare_dpg_data` reads them, with one switch: the official loop skips pandas row 0
(`if i == 0: continue`), so the first question of the first item is never asked and every published number
includes that. `ask_first_question=False` (the default) reproduces it; True asks it (not comparable).
A question whose parent is then not asked makes the official scorer fail on that image (a KeyError it catches,
so the image counts in no score); scoring.py reproduces that only in this case, and records it. Without the
quirk, a parent that is not in its item is a broken CSV and is refused here.
Every column is read as text: pandas would turn an all-digit item_id into a number, which never matches the
image file's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uae_data.core.errors import InputError

COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad", "category_detailed",
           "tuple", "question_natural_language")


@dataclass(frozen=True)
class Question:
    """One CSV row: a yes/no question about an item, with the questions it depends on (its parents)."""

    item_id: str
    proposition_id: int
    parents: tuple[int, ...]  # the `dependency` ids as written (0 = none), in CSV order
    tuple_text: str  # the `tuple` column, e.g. "entity - whole (cat)"
    question: str  # the `question_natural_language` column: what a VQA judge is asked
    row: int  # the pandas row index (0 = the first data row)

    @property
    def category(self) -> str:
        """The L2 category, as the official script names it: the tuple up to its first '('."""
        return self.tuple_text.split("(")[0].strip()

    @property
    def l1(self) -> str:
        """The L1 category: the L2 category up to its first '-'."""
        return self.category.split("-")[0].strip()


@dataclass
class Item:
    """One prompt and its asked questions, in CSV order."""

    item_id: str
    text: str
    questions: list[Question] = field(default_factory=list)

    def question_ids(self) -> set[int]:
        return {q.proposition_id for q in self.questions}


@dataclass
class DPGData:
    items: list[Item]
    skipped_question: dict | None  # {item_id, proposition_id} of the row the official loop never asks, or None
    csv: str

    def by_id(self) -> dict[str, Item]:
        return {it.item_id: it for it in self.items}


def _int(value: str, where: str, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: {what} {value!r} is not an integer") from None


def load_csv(path: str | Path, ask_first_question: bool = False) -> DPGData:
    """Items in CSV order; refuses a CSV that breaks the format in one line naming the row (1-based data row)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (the csv field of the manifest, or csv=PATH)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; DPG-Bench's dpg_bench.csv has "
                         + ", ".join(COLUMNS))
    if frame.empty:
        raise InputError(f"{path}: no rows")
    items: list[Item] = []
    seen_items: set[str] = set()
    skipped = None
    for i, row in enumerate(frame.to_dict("records")):
        where = f"{path}: row {i + 1}"
        item_id = row["item_id"].strip()
        if not item_id:
            raise InputError(f"{where}: empty item_id")
        qid = _int(row["proposition_id"], where, "proposition_id")
        parents = tuple(_int(d, where, "dependency") for d in str(row["dependency"]).split(","))
        if not items or items[-1].item_id != item_id:
            if item_id in seen_items:
                raise InputError(f"{where}: item {item_id!r} continues after other items; an item's rows must be "
                                 "contiguous (the official loader would keep only its last block)")
            seen_items.add(item_id)
            items.append(Item(item_id, row["text"]))
        item = items[-1]
        if any(q.proposition_id == qid for q in item.questions) or (skipped and skipped == {"item_id": item_id, "proposition_id": qid}):
            raise InputError(f"{where}: item {item_id!r} has proposition_id {qid} twice")
        if i == 0 and not ask_first_question:
            skipped = {"item_id": item_id, "proposition_id": qid}
            continue
        item.questions.append(Question(item_id, qid, parents, row["tuple"], row["question_natural_language"], i))
    if not ask_first_question:
        return DPGData(items, skipped, str(path))
    for item in items:  # every row is asked: a parent outside the item is a broken CSV
        ids = item.question_ids()
        for q in item.questions:
            bad = [p for p in q.parents if p != 0 and p not in ids]
            if bad:
                raise InputError(f"{path}: row {q.row + 1}: item {item.item_id!r} question {q.proposition_id} depends "
                                 f"on question {bad[0]}, which the item does not have")
    return DPGData(items, None, str(path))


def read_prompt(folder: str | Path, item_id: str) -> str:
    """The prompt a model paints for `item_id` (prompts/<item_id>.txt, surrounding whitespace stripped)."""
    f = Path(folder) / f"{item_id}.txt"
    try:
        text = f.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"{f}: missing; the prompts folder (prompts=DIR) needs one <item_id>.txt per item") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{f}: cannot read ({e})") from None
    if not text:
        raise InputError(f"{f}: empty prompt")
    return text
