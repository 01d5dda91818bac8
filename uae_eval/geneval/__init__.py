"""GenEval (djghosh13/geneval @af4902f): prompt metadata, the official decision rules, the scene-world prompt set.

prompts.py        read and validate metadata jsonl (official format) and class-name files
rules.py          the official filtering, decision and aggregation, as pure functions
scene_prompts.py  the scene GenEval: same format and six tags, scene shapes as classes, oracle scenes
"""
