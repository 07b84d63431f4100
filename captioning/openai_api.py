"""The OpenAI-compatible server backend: `/v1/chat/completions` as served by vLLM, Ollama or TGI.

For captioning thousands of images on a separate GPU box, over httpx (one connection pool,
retries with backoff). Images travel only to the URL the user configures (as PNG data URLs, already stripped of metadata by the import); nothing is
sent anywhere else. `top_k` is not part of OpenAI's own API but vLLM and TGI accept it; turn
it off (`send_top_k=False`) for servers that reject unknown fields. `simplify()` uses the
same server as a text model for the VSG's shortening pass.
"""

from __future__ import annotations

import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from captioning.base import Caption, Captioner, CaptionerError, SamplingConfig
from captioning.templates import ModalityTemplate


def image_data_url(image: Image.Image, max_side: int = 1024) -> str:
    """A PNG data URL of the image (RGB, longest side at most `max_side`, no metadata)."""
    image = image.convert("RGB")
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAICompatibleCaptioner(Captioner):
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        sampling: SamplingConfig | None = None,
        batch_size: int = 4,
        timeout: float = 120.0,
        send_top_k: bool = True,
        retries: int = 2,
        **_ignored,
    ):
        base_url = base_url or os.environ.get("MEDART_CAPTION_URL")
        if not base_url:
            raise ValueError(
                "the openai backend needs the server's URL: pass --url http://HOST:PORT/v1 "
                "(or set MEDART_CAPTION_URL)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--url must start with http:// or https:// (got {base_url!r})")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("MEDART_CAPTION_API_KEY")
        self.sampling = sampling or SamplingConfig()
        self.batch_size = max(1, batch_size)
        self.timeout = timeout
        self.send_top_k = send_top_k
        self.retries = retries
        self._client = httpx.Client(timeout=timeout)

    @property
    def endpoint(self) -> str:
        base = self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"
        return base + "/chat/completions"

    def _post(self, payload: dict) -> dict:
        """POST to the server with httpx; connection failures, timeouts and 5xx answers are retried
        `retries` times with exponential backoff (0.5 s, 1 s, 2 s, ...), 4xx answers are not."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        last: CaptionerError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.endpoint, json=payload, headers=headers)
            except httpx.TransportError as e:  # refused, unreachable, timed out
                last = CaptionerError(
                    f"cannot reach the caption server at {self.endpoint}: {e or type(e).__name__}. "
                    "Check that it is running and that --url is right.")
                continue
            if response.status_code >= 500:
                last = CaptionerError(f"the caption server at {self.endpoint} answered {response.status_code}: "
                                      f"{response.text[:300]}")
                continue
            if response.status_code >= 400:  # the request is wrong; retrying will not help
                raise CaptionerError(
                    f"the caption server at {self.endpoint} answered {response.status_code}: {response.text[:300]}. "
                    "Check --model (the name the server serves) and the API key (MEDART_CAPTION_API_KEY).")
            try:
                return response.json()
            except ValueError as e:
                raise CaptionerError(f"the caption server at {self.endpoint} did not answer JSON: {e}") from None
        raise last

    def close(self) -> None:
        self._client.close()

    def _sampling_fields(self, max_tokens: int | None = None) -> dict:
        s = self.sampling
        fields = {"max_tokens": max_tokens or s.max_new_tokens}
        if s.do_sample:
            fields.update(temperature=s.temperature, top_p=s.top_p)
            if self.send_top_k:
                fields["top_k"] = s.top_k
        else:
            fields["temperature"] = 0.0
        if s.seed is not None:
            fields["seed"] = s.seed
        return fields

    @staticmethod
    def _content(answer: dict) -> str:
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise CaptionerError(f"the caption server's answer has no choices[0].message.content: {str(answer)[:200]}")
        if isinstance(content, list):  # some servers return content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return (content or "").strip()

    def _one(self, image: Image.Image, simple: str, template: ModalityTemplate) -> Caption:
        t0 = time.perf_counter()
        prompt = template.render_prompt(simple)
        payload = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": {"url": image_data_url(image)}},
                    ],
                }
            ],
            **self._sampling_fields(),
        }
        text = self._content(self._post(payload))
        return Caption(
            text=text,
            backend=self.backend,
            model=f"{self.model} @ {self.base_url}",
            prompt=prompt,
            sampling=self.sampling.as_dict() | {"top_k_sent": self.send_top_k},
            seconds=round(time.perf_counter() - t0, 4),
        )

    def generate(self, images, simple_captions, template: ModalityTemplate) -> list[Caption]:
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(lambda a: self._one(*a, template), zip(images, simple_captions)))

    def simplify(self, text: str, max_tokens: int) -> str:
        """The same server as a text model: shorten `text`, keeping its first words."""
        words = max(20, int(max_tokens * 0.6))
        payload = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": (
                        f"Shorten this image description to at most {words} words. Keep its first sentence's "
                        f"opening words exactly and keep the visual details. Answer with the description only.\n\n{text}"
                    ),
                }
            ],
            **self._sampling_fields(max_tokens=max_tokens),
        }
        return self._content(self._post(payload))
