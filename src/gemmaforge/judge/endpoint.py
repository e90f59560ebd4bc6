"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, a
hosted API): how users bring a judge larger than anything that installs offline.

Each order is one request for a single token at temperature 0 with `logprobs`/`top_logprobs`; the
verdict is read from the probabilities of the label tokens in the top list ("A" and " A" count as
the same label). A server that gives no log-probabilities (or refuses the option) is asked for the
one-token answer alone, which then counts as probability 1 for the label it names; an answer that
names neither label counts as 0.5 (no preference) and is kept as `raw_*` for the record.
Network faults, 429 and 5xx are retried with exponential backoff; anything else fails at once with
one line saying what the endpoint answered.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .prompt import LABELS, JudgePrompt
from .types import JudgeError, JudgeItem, Judgement, combine

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointJudge:
    """Judges through `base_url`/chat/completions, `workers` requests at a time."""

    def __init__(self, base_url: str, model_name: str, prompt: JudgePrompt, *, api_key: str | None = None,
                 timeout_s: float = 60.0, retries: int = 4, backoff_s: float = 1.0, workers: int = 4,
                 top_logprobs: int = 20) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.base_url, self.model_name, self.prompt = base_url.rstrip("/"), model_name, prompt
        self.api_key, self.timeout_s, self.retries, self.backoff_s = api_key, timeout_s, retries, backoff_s
        self.workers, self.top_logprobs = workers, top_logprobs
        self.use_logprobs = True  # turned off for good if the server refuses the option
        self.name = f"{model_name}@{self.base_url}"

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, url: str, body: dict | None) -> Any:
        """The decoded JSON answer; retries what may pass, raises JudgeError for the rest."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        attempt = 0
        while True:
            last = attempt == self.retries
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = _snippet(e.read())
                if e.code not in RETRY_STATUS or last:
                    hint = " (unauthorized: check the API key variable)" if e.code in (401, 403) else ""
                    raise _HTTPStatus(e.code, f"judge endpoint {url} answered HTTP {e.code}{hint}: {detail}") from None
                time.sleep(_retry_after(e) or self.backoff_s * 2 ** attempt)
            except (urllib.error.URLError, OSError) as e:  # refused, reset, DNS, timeout
                if last:
                    reason = getattr(e, "reason", None) or e
                    raise _Unreachable(f"cannot reach judge endpoint {url} after {attempt + 1} tries: "
                                       f"{reason}") from None
                time.sleep(self.backoff_s * 2 ** attempt)
            else:
                try:
                    return json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise JudgeError(f"judge endpoint {url} answered something that is not JSON: "
                                     f"{_snippet(raw)}") from None
            attempt += 1

    def check(self) -> None:
        """Fail early when nothing listens at the base URL (before hours of generation). A server
        without `/models` (404 and the like) is fine: only an unreachable one is an error."""
        try:
            self._request(self.base_url + "/models", None)
        except _Unreachable:
            raise
        except _HTTPStatus as e:
            if e.code in (401, 403):
                raise
        except JudgeError:
            pass  # an odd /models answer says nothing about chat completions

    # -- one order -------------------------------------------------------------------------
    def _ask(self, text: str) -> tuple[float, float | None, str | None]:
        """(P(label A) among the labels, mass on the labels or None, raw text when no probabilities)."""
        body: dict[str, Any] = {"model": self.model_name, "messages": [{"role": "user", "content": text}],
                                "max_tokens": 1, "temperature": 0}
        if self.use_logprobs:
            body |= {"logprobs": True, "top_logprobs": self.top_logprobs}
        try:
            answer = self._request(self.url, body)
        except _HTTPStatus as e:
            if not ("logprobs" in body and e.code in (400, 422) and "logprob" in str(e).lower()):
                raise
            self.use_logprobs = False  # this server does not do log-probabilities: ask for text alone
            return self._ask(text)
        content, top = _parse(answer, self.url)
        probs = {label: 0.0 for label in LABELS}
        for entry in top or ():
            if not isinstance(entry, dict):
                continue
            label = str(entry.get("token", "")).strip()
            if label in probs and isinstance(entry.get("logprob"), (int, float)):
                probs[label] += math.exp(entry["logprob"])
        mass = sum(probs.values())
        if mass > 0:
            return probs[LABELS[0]] / mass, mass, None
        first = content.strip()[:1]
        return (1.0 if first == LABELS[0] else 0.0 if first == LABELS[1] else 0.5), None, content

    def _judge_one(self, item: JudgeItem) -> Judgement:
        pa1, m1, r1 = self._ask(self.prompt.render(item, swapped=False))
        pa2_as_b, m2, r2 = self._ask(self.prompt.render(item, swapped=True))
        return combine(item, pa1, 1.0 - pa2_as_b, mass_first=m1, mass_second=m2, raw_first=r1, raw_second=r2)

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            return list(pool.map(self._judge_one, items))


class _Unreachable(JudgeError):
    pass


class _HTTPStatus(JudgeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse(answer: Any, url: str) -> tuple[str, list | None]:
    """(content, top_logprobs of the first token or None) from a chat-completions answer."""
    try:
        choice = answer["choices"][0]
        content = choice["message"].get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise JudgeError(f"judge endpoint {url} did not answer in the chat-completions shape ({e}): "
                         f"{_snippet(json.dumps(answer).encode())}") from None
    logprobs = choice.get("logprobs") or {}
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    top = tokens[0].get("top_logprobs") if isinstance(tokens, list) and tokens and isinstance(tokens[0], dict) else None
    return content, top if isinstance(top, list) else None


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    try:
        return min(float(e.headers.get("Retry-After", "")), 60.0)
    except (TypeError, ValueError):
        return None


def _snippet(raw: bytes, n: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return (text[:n] + "...") if len(text) > n else text or "(empty body)"


def api_key_from(env_var: str) -> str | None:
    """The key in `env_var`, if set (local servers often need none)."""
    return os.environ.get(env_var) or None
