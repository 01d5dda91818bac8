"""DPG-Bench judges (registry): who answers each yes/no question about one tile.

mplug  the official judge: modelscope's VQA pipeline with mPLUG-large (`damo/mplug_visual-question-answering_
       coco_large_en`), asked the question as written, its text kept as is (the official rule scores it 1 iff
       it is exactly "yes"). modelscope is an optional extra (`pip install 'uae[dpg-mplug]'`); without it the
       judge is refused in one line before anything runs.
vlm    any transformers AutoModelForImageTextToText, or a VLM served by vLLM/SGLang/lmdeploy (`server.endpoint`;
       uae_eval/vlm_judge.py: a grid's questions all in flight at once), asked the question plus "Answer yes or
       no."; its reply is normalised to "yes" / "no" (`yes_no`). Never official-compatible: another judge gives
       other numbers.
scene  the scene world's exact judge: the tile's scene read by the scene detector (`read_scene`), each Scene-DPG
       tuple answered from it exactly (scene_dpg.answer). Questions of other CSVs are refused up front.

A judge is `judge(tile, questions) -> answers` (one answer string per question, in order) with
`provenance() -> dict` (backend, model, official_compatible) recorded in results.json.
"""
from __future__ import annotations

import importlib.util
import re
from typing import Callable, Protocol, Sequence

from PIL import Image

from uae_data.core.errors import ConfigError, InputError
from uae_data.core.registry import Registry
from uae_eval.dpg_bench.data import Item, Question

OFFICIAL_MPLUG = "damo/mplug_visual-question-answering_coco_large_en"
EXTRA = "dpg-mplug"
VLM_PROMPT = "{question} Answer yes or no."


class Judge(Protocol):
    def __call__(self, tile: Image.Image, questions: Sequence[Question]) -> list[str]: ...

    def provenance(self) -> dict: ...


JUDGES: Registry[Callable[..., Judge]] = Registry("judge")


@JUDGES.register("scene")
class SceneJudge:
    """Exact answers from the scene the detector reads in the tile."""

    def __init__(self) -> None:  # no options (the manifest's judge_options are checked against this)
        pass

    def __call__(self, tile: Image.Image, questions: Sequence[Question]) -> list[str]:
        from uae_data.scene_detect import read_scene
        from uae_eval.dpg_bench.scene_dpg import answer

        scene = read_scene(tile)
        return [answer(scene, q.tuple_text) for q in questions]

    def check(self, items: Sequence[Item], source: str) -> None:
        from uae_eval.dpg_bench.scene_dpg import parses

        for item in items:
            for q in item.questions:
                if not parses(q.tuple_text):
                    raise InputError(f"{source}: row {q.row + 1}: tuple {q.tuple_text!r} is not a Scene-DPG "
                                     "proposition; the scene judge answers Scene-DPG questions only (judge real "
                                     "prompts with --judge mplug or --judge vlm)")

    def provenance(self) -> dict:
        return {"backend": "scene", "model": "scene detector (uae_data.scene_detect)", "official_compatible": False}


@JUDGES.register("mplug")
class MplugJudge:
    """The official VQA judge through modelscope, as compute_dpg_bench.py's MPLUG class calls it."""

    def __init__(self, model: str = OFFICIAL_MPLUG, device: str | None = None) -> None:
        if importlib.util.find_spec("modelscope") is None:
            raise ConfigError(f"judge mplug needs the modelscope package, which is not installed: "
                              f"pip install 'uae[{EXTRA}]' (or judge with --judge vlm / scene)")
        from modelscope.pipelines import pipeline
        from modelscope.utils.constant import Tasks

        from uae_data.core.device import default_device

        self.model = model
        device = device or default_device()  # "cuda" or "cpu", as the official script passes str(accelerator.device)
        self.pipeline = pipeline(Tasks.visual_question_answering, model=model, device=device)

    def __call__(self, tile: Image.Image, questions: Sequence[Question]) -> list[str]:
        return [self.pipeline({"image": tile, "question": q.question})["text"] for q in questions]

    def provenance(self) -> dict:
        return {"backend": "mplug", "model": self.model, "official_compatible": self.model == OFFICIAL_MPLUG}


def first_word(text: str) -> str:
    """A free-form reply's first word, lower case, punctuation and markup ignored ("" when it has none)."""
    words = re.findall(r"[a-z]+", str(text).lower())
    return words[0] if words else ""


def yes_no(text: str) -> str:
    """A free-form reply as "yes" or "no": "yes" iff its first word is yes."""
    return "yes" if first_word(text) == "yes" else "no"


@JUDGES.register("vlm")
class VLMJudge:
    """Any image-text-to-text model; `ask(images, prompt) -> text` is built by the caller (uae_train loads models).
    An `ask` with `answer_many` (a served VLM) is asked a group of grids' questions in one call."""

    def __init__(self, ask: Callable | None = None, model: str | None = None, prompt: str = VLM_PROMPT,
                 max_new_tokens: int = 8) -> None:
        if ask is None:
            raise ConfigError("judge vlm needs a model: give --judge-model DIR (any AutoModelForImageTextToText "
                              "folder or hub name)")
        if "{question}" not in prompt:
            raise ConfigError("judge_options.prompt must contain {question}")
        self.ask, self.model, self.prompt, self.max_new_tokens = ask, model, prompt, max_new_tokens
        self.raw: list[str] = []  # the last call's replies before normalising
        if hasattr(ask, "answer_many"):  # the harness asks a group of grids at once only when `ask` can take them
            self.judge_grids = self._judge_grids

    def __call__(self, tile: Image.Image, questions: Sequence[Question]) -> list[str]:
        self.raw = [self.ask([tile], self.prompt.format(question=q.question)) for q in questions]
        return [yes_no(r) for r in self.raw]

    def _judge_grids(self, grids: Sequence[tuple[Sequence[Image.Image], Sequence[Question]]]) -> list:
        """Per grid, per tile: (answers, raw replies). Only for an `ask` with answer_many (a served VLM): every
        question of every tile in one call, so the server has them all in flight."""
        prompts = [[self.prompt.format(question=q.question) for q in questions] for _, questions in grids]
        raw = iter(self.ask.answer_many([([tile], p) for (tiles, _), ps in zip(grids, prompts) for tile in tiles
                                         for p in ps]))
        out = []
        for (tiles, _), ps in zip(grids, prompts):
            per_tile = []
            for _ in tiles:
                replies = [next(raw) for _ in ps]
                per_tile.append(([yes_no(r) for r in replies], replies))
            out.append(per_tile)
        return out

    def provenance(self) -> dict:
        out = {"backend": "vlm", "model": self.model, "prompt": self.prompt, "official_compatible": False}
        served = getattr(self.ask, "cfg", None)
        if served is not None and getattr(served, "endpoint", None):  # a served judge: where, and what failed
            errors = getattr(self.ask, "errors", [])
            out |= {"server": served.endpoint, "max_tokens": served.max_tokens, "failed_requests": len(errors),
                    "first_failure": errors[0] if errors else None}
        return out


def build_judge(name: str, **options) -> Judge:
    if name not in JUDGES:
        raise ConfigError(f"unknown judge {name!r} (known: {', '.join(JUDGES.names())})")
    return JUDGES.get(name)(**options)
