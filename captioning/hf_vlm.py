"""The transformers VLM backend: any image-text-to-text model from a hub id or a local folder.

Loaded once per job through `AutoModelForImageTextToText` + `AutoProcessor` and freed by
`close()`. Models whose processor has a chat template (LLaVA-NeXT, Qwen2-VL, SmolVLM, ...)
get the VSG prompt as a user turn with the image; models without one (BLIP-style
captioners) get the simple caption as the text prefix to continue, which is how they are
conditioned. Sampling defaults are the paper's (temperature 0.8, top-k 50, top-p 0.9,
150 new tokens). Suggested models: `llava-hf/llama3-llava-next-8b-hf` on a GPU (the
paper's), `HuggingFaceTB/SmolVLM-256M-Instruct` on a CPU.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from captioning.base import Caption, Captioner, CaptionerError, SamplingConfig, timed_captions
from captioning.templates import ModalityTemplate

SUGGESTED_GPU = "llava-hf/llama3-llava-next-8b-hf"
SUGGESTED_CPU = "HuggingFaceTB/SmolVLM-256M-Instruct"


def suggested_model() -> str:
    """The paper's LLaVA-NeXT 8B on a CUDA machine, a small VLM that runs on a CPU elsewhere."""
    import torch

    return SUGGESTED_GPU if torch.cuda.is_available() else SUGGESTED_CPU


class TransformersVLMCaptioner(Captioner):
    backend = "transformers"

    def __init__(
        self,
        model: str,
        sampling: SamplingConfig | None = None,
        batch_size: int = 4,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool | None = None,
        **_ignored,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model = str(model)
        self.sampling = sampling or SamplingConfig()
        self.batch_size = max(1, batch_size)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = getattr(torch, dtype)
        local = Path(model).expanduser().is_dir()
        if local_files_only is None:
            local_files_only = local or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        source = str(Path(model).expanduser()) if local else model
        try:
            self.processor = AutoProcessor.from_pretrained(source, local_files_only=local_files_only)
            self.net = AutoModelForImageTextToText.from_pretrained(
                source, dtype=self.dtype, local_files_only=local_files_only
            )
        except (OSError, ValueError) as e:
            raise CaptionerError(
                f"could not load the captioning model {model!r}: {e}. Give a local folder saved with "
                "save_pretrained (model + processor), or a hub id of an image-text-to-text model "
                f"(e.g. {SUGGESTED_CPU} on a CPU) on a machine that can reach the hub."
            ) from e
        self.net.to(self.device).eval()
        tokenizer = getattr(self.processor, "tokenizer", None)
        self.encoder_decoder = bool(getattr(self.net.config, "is_encoder_decoder", False))
        if tokenizer is not None and not self.encoder_decoder:
            tokenizer.padding_side = "left"  # batched generation continues after the prompt
        if not getattr(self.processor, "chat_template", None) and getattr(tokenizer, "chat_template", None):
            self.processor.chat_template = tokenizer.chat_template  # some processors leave it on the tokenizer
        self.chat = bool(getattr(self.processor, "chat_template", None))

    def _inputs(self, images, simple_captions, template):
        prompts = [template.render_prompt(s) for s in simple_captions]
        if self.chat:
            texts = [
                self.processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                    add_generation_prompt=True,
                )
                for p in prompts
            ]
        else:
            texts = list(simple_captions)
            prompts = [f"(prefix) {s}" for s in simple_captions]
        extra = {}
        bos = getattr(getattr(self.processor, "tokenizer", None), "bos_token", None)
        if self.chat and bos and all(t.startswith(bos) for t in texts):
            # The template already wrote the BOS token (Llama-3.2-Vision, Gemma 3, ...);
            # a tokenizer that adds its own would start the prompt with two. transformers applies the
            # same rule when it tokenizes a chat template itself.
            extra["add_special_tokens"] = False
        batch = self.processor(
            images=[im.convert("RGB") for im in images], text=texts, return_tensors="pt", padding=True, **extra
        )
        return batch.to(self.device), prompts

    def generate(self, images, simple_captions, template: ModalityTemplate) -> list[Caption]:
        import torch

        out: list[Caption] = []
        for start in range(0, len(images), self.batch_size):
            t0 = time.perf_counter()
            ims, sims = images[start : start + self.batch_size], simple_captions[start : start + self.batch_size]
            batch, prompts = self._inputs(ims, sims, template)
            if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
                batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
            s = self.sampling
            if s.seed is not None:
                torch.manual_seed(s.seed + start)
            kwargs = dict(max_new_tokens=s.max_new_tokens, do_sample=s.do_sample)
            if s.do_sample:
                kwargs.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
            with torch.inference_mode():
                ids = self.net.generate(**batch, **kwargs)
            texts = self._answers(ids, batch.get("input_ids"))
            out.extend(timed_captions(texts, self.backend, self.model, prompts, s.as_dict(), t0))
        return out

    def _answers(self, ids, prompt_ids) -> list[str]:
        """Decoded generations without the prompt (chat models echo their input ids first)."""
        decode = self.processor.batch_decode
        if not self.chat or prompt_ids is None or self.encoder_decoder:
            return [t.strip() for t in decode(ids, skip_special_tokens=True)]
        n = prompt_ids.shape[1]
        if ids.shape[1] >= n and bool((ids[:, :n] == prompt_ids).all()):
            return [t.strip() for t in decode(ids[:, n:], skip_special_tokens=True)]
        texts = []
        for text, prompt in zip(decode(ids, skip_special_tokens=True), decode(prompt_ids, skip_special_tokens=True)):
            text, prompt = text.strip(), prompt.strip()
            texts.append(text[len(prompt) :].strip() if prompt and text.startswith(prompt) else text)
        return texts

    def close(self) -> None:
        import torch

        for name in ("net", "processor"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
