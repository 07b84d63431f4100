"""The VSG's shortening pass with a text model, as the authors did with T5 ("simplify: ...").

When a caption is over the token limit, `vsg.finalize` calls a simplifier `(text,
max_tokens) -> shorter text`, then repairs the start and, if the result is still too long,
trims it at sentence boundaries. Two simplifiers exist: `OpenAICompatibleCaptioner.simplify`
(the caption server as a text model) and `TransformersSimplifier` here, which runs any
seq2seq or causal text model from a hub id or folder (the authors used `t5-large` with
beam search 4 and a 90-120 token target).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path


class TransformersSimplifier:
    """A local text model that shortens captions; load once per job, `close()` after."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        num_beams: int = 4,
        prefix: str = "simplify: ",
        min_fraction: float = 0.75,  # the authors' 90 of 120 tokens
        local_files_only: bool | None = None,
    ):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        local = Path(model).expanduser().is_dir()
        if local_files_only is None:
            local_files_only = local or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        source = str(Path(model).expanduser()) if local else model
        self.model = str(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
            self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
            cls = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
            self.net = cls.from_pretrained(source, local_files_only=local_files_only).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ValueError(
                f"could not load the simplify model {model!r}: {e}. Give a local folder with a text model and its "
                "tokenizer (e.g. t5-large saved with save_pretrained), or a hub id reachable from here"
            ) from e
        self.num_beams = num_beams
        self.prefix = prefix
        self.min_fraction = min_fraction

    def __call__(self, text: str, max_tokens: int) -> str:
        import torch

        inputs = self.tokenizer(self.prefix + text, return_tensors="pt", truncation=True, max_length=512).to(self.device)
        with torch.inference_mode():
            out = self.net.generate(
                **inputs,
                max_new_tokens=max(1, max_tokens - 1),  # room for the end-of-sequence token
                min_new_tokens=int(self.min_fraction * (max_tokens - 1)),
                num_beams=self.num_beams,
                early_stopping=True,
                do_sample=False,
            )
        if not self.encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()

    def close(self) -> None:
        import torch

        for name in ("net", "tokenizer"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
