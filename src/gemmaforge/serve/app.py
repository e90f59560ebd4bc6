"""The HTTP side of `gemmaforge serve`: OpenAI's routes over the engine (Starlette, run by uvicorn).

Handlers only translate: a request becomes token ids and one engine `Sequence` per choice, the
engine's events become a JSON body or server-sent events. Nothing from a request reaches a shell
or the file system; bodies are size-limited before they are parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import GemmaForgeError
from ..inference.sampling import Sampling
from .engine import Engine, Event, FinishEvent, Params, QueueFull, Sequence, TokenEvent, room_for
from .protocol import ChatRequest, CompletionRequest, error, validation_error

log = logging.getLogger("gemmaforge.serve")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


@dataclass
class Settings:
    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    request_timeout: float = 600.0


class RequestFailed(Exception):
    """Ends a request early with an OpenAI-shaped error response."""

    def __init__(self, response: JSONResponse):
        self.response = response


def create_app(engine: Engine, settings: Settings) -> Starlette:
    """The ASGI app. Its lifespan starts and stops the engine's thread."""
    server = _Server(engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    routes = [Route("/v1/chat/completions", server.chat, methods=["POST"]),
              Route("/v1/completions", server.completions, methods=["POST"]),
              Route("/v1/models", server.models, methods=["GET"]),
              Route("/health", server.health, methods=["GET"]),
              Route("/metrics", server.metrics, methods=["GET"])]
    handlers = {HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(_Guard, settings=settings, engine=engine)
    return app


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    what = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
    return error(exc.status_code, what, code="not_found" if exc.status_code == 404 else None)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, "internal server error (see the server log)", "server_error")


class _Guard:
    """ASGI middleware: the API key (all but /health), and per-request metrics."""

    def __init__(self, app, settings: Settings, engine: Engine):
        self.app, self.settings, self.metrics = app, settings, engine.metrics
        self.key = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = 500
        start = time.perf_counter()

        async def record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.key and path != "/health" and not hmac.compare_digest(_header(scope, b"authorization"), self.key):
                resp = error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                             "authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, record)
            else:
                await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.observe(time.perf_counter() - start)


def _header(scope, name: bytes) -> bytes:
    return next((v for k, v in scope["headers"] if k.lower() == name), b"")


class _Server:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine, self.settings = engine, settings
        self.tokenizer = engine.tokenizer
        self.vocab = min(engine.model.config.vocab_size, getattr(self.tokenizer, "vocab_size", 1 << 62))

    # -- plain routes ------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "active": self.engine.active, "waiting": len(self.engine.waiting)})

    async def metrics(self, request: Request) -> Response:
        return Response(self.engine.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.settings.model_name, "object": "model", "created": 0, "owned_by": "gemmaforge",
             "max_model_len": self.engine.context}]})

    # -- generation routes -------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        try:
            req = await self._parse(request, ChatRequest)
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in req.messages]
            prompt = await run_in_threadpool(self._chat_ids, messages)
            return await self._generate(request, req, [prompt], chat=True)
        except RequestFailed as e:
            return e.response

    async def completions(self, request: Request) -> Response:
        try:
            req = await self._parse(request, CompletionRequest)
            prompts = [await run_in_threadpool(self._encode, lambda p=p: p, "prompt") if isinstance(p, str)
                       else self._ids(p) for p in req.prompts]
            return await self._generate(request, req, prompts, chat=False)
        except RequestFailed as e:
            return e.response

    def _chat_ids(self, messages: list[dict]) -> list[int]:
        return self._encode(lambda: self.tokenizer.apply_chat_template(messages, True, system="fold"), "messages")

    def _encode(self, text, param: str) -> list[int]:
        """Token ids of `text()`; a template error or text that is not Unicode is the client's."""
        try:
            return self.tokenizer.encode(text())
        except GemmaForgeError as e:
            raise RequestFailed(error(400, str(e), param=param)) from None
        except UnicodeError:
            raise RequestFailed(error(400, f"{param}: the text is not valid Unicode (a lone surrogate?)",
                                      param=param)) from None

    def _ids(self, ids: list[int]) -> list[int]:
        bad = [i for i in ids if not 0 <= i < self.vocab]
        if bad:
            raise RequestFailed(error(400, f"prompt: token id {bad[0]} is outside the vocabulary "
                                           f"(0..{self.vocab - 1})", param="prompt"))
        return ids

    async def _parse(self, request: Request, kind):
        limit = self.settings.max_body_bytes
        size = request.headers.get("content-length", "")
        too_big = RequestFailed(error(413, f"request body is larger than the server's limit of {limit} bytes",
                                      code="request_too_large"))
        if size.isdigit() and int(size) > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise RequestFailed(error(400, f"the body is not valid JSON: {str(e)[:200]}",
                                      code="invalid_json")) from None
        try:
            req = kind.model_validate(data)
        except ValidationError as e:
            raise RequestFailed(validation_error(e)) from None
        if req.model is not None and req.model != self.settings.model_name:
            raise RequestFailed(error(404, f"model {req.model!r} is not served here; this server serves "
                                           f"{self.settings.model_name!r}", param="model", code="model_not_found"))
        return req

    async def _generate(self, request: Request, req, prompts: list[list[int]], chat: bool) -> Response:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(ev: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ev)

        seed = random.randrange(2**63) if req.seed is None else req.seed
        seqs = []
        for pi, prompt in enumerate(prompts):
            try:
                max_tokens = room_for(len(prompt), self.engine.context, req.limit)
            except GemmaForgeError as e:
                return error(400, f"prompt {pi}: {e}" if len(prompts) > 1 else str(e),
                             param="messages" if chat else "prompt", code="context_length_exceeded")
            for c in range(req.n):
                index = pi * req.n + c
                sampling = Sampling(_temperature(req.temperature), req.top_k, req.top_p, seed=seed)
                params = Params(max_tokens, sampling, tuple(req.stop), req.n_logprobs, req.ignore_eos)
                seqs.append(Sequence(prompt, params, sink, index))
        if len(seqs) > self.engine.max_queue:
            return error(400, f"the request asks for {len(seqs)} sequences; this server queues at most "
                              f"{self.engine.max_queue}", param="n")
        try:
            self.engine.submit(seqs)
        except QueueFull as e:
            return error(429, f"the server is busy ({e}); retry later", "rate_limit_error",
                         code="rate_limit_exceeded", headers={"Retry-After": "1"})
        reply = _Reply(self.settings.model_name, chat, self.tokenizer, sum(len(p) for p in prompts), len(seqs))
        stream = self._events(request, events, seqs)
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return _EventStream(reply.sse(stream, usage), lambda: self.engine.cancel(seqs))
        try:
            return JSONResponse(await reply.whole(stream))
        except TimeoutError:
            return error(504, f"the request did not finish within the server's timeout of "
                              f"{self.settings.request_timeout:g} s", "timeout_error", code="timeout")

    async def _events(self, request: Request, events: asyncio.Queue, seqs: list[Sequence]) -> AsyncIterator[Event]:
        """The engine's events until every sequence finished. The client leaving, a timeout or the
        consumer stopping cancels what is left, so its batch rows are freed at the next step."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        left = len(seqs)
        gone = asyncio.ensure_future(_disconnected(request))
        get = None
        try:
            while left:
                get = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({get, gone}, timeout=max(deadline - loop.time(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    if gone in done:
                        return
                    raise TimeoutError
                ev = get.result()
                left -= isinstance(ev, FinishEvent)
                yield ev
        finally:
            gone.cancel()
            if get is not None:
                get.cancel()
            if left:
                self.engine.cancel(seqs)


class _EventStream(StreamingResponse):
    """Server-sent events; whatever ends the response (even a client gone before the first byte,
    when the event generator never starts) cancels the sequences that have not finished."""

    def __init__(self, content, on_close):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _temperature(t: float | None) -> float:
    """OpenAI's default is 1; below 1e-5 logits / t overflows to inf, so that is greedy (as vLLM does)."""
    return 1.0 if t is None else t if t >= 1e-5 else 0.0


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _Reply:
    """Turns engine events into OpenAI response objects (whole, or as server-sent events)."""

    def __init__(self, model: str, chat: bool, tokenizer, prompt_tokens: int, choices: int):
        self.model, self.chat, self.tok = model, chat, tokenizer
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.prompt_tokens, self.choices = prompt_tokens, choices
        self.completion_tokens = 0

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def _head(self, chunk: bool) -> dict:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def _token(self, ev: TokenEvent) -> str:
        return self.tok.decode([ev.token])

    def _chat_logprobs(self, toks: list[TokenEvent]) -> dict:
        def entry(t: int, lp: float) -> dict:
            s = self.tok.decode([t])
            return {"token": s, "logprob": lp, "bytes": list(s.encode())}

        return {"content": [{**entry(e.token, e.logprob), "top_logprobs": [entry(t, lp) for t, lp in e.top or []]}
                            for e in toks]}

    def _text_logprobs(self, toks: list[TokenEvent], offset: int = 0) -> dict:
        tokens = [self._token(e) for e in toks]
        offsets = []
        for s in tokens:
            offsets.append(offset)
            offset += len(s)
        return {"tokens": tokens, "token_logprobs": [e.logprob for e in toks],
                "top_logprobs": [{self.tok.decode([t]): lp for t, lp in e.top or []} for e in toks],
                "text_offset": offsets}

    def _logprobs(self, toks: list[TokenEvent], offset: int = 0) -> dict:
        return self._chat_logprobs(toks) if self.chat else self._text_logprobs(toks, offset)

    async def whole(self, events: AsyncIterator[Event]) -> dict:
        texts = [[] for _ in range(self.choices)]
        toks: list[list[TokenEvent]] = [[] for _ in range(self.choices)]
        finish: list[str | None] = [None] * self.choices
        async with contextlib.aclosing(events) as events:
            async for ev in events:
                if isinstance(ev, FinishEvent):
                    finish[ev.index] = ev.reason
                    self.completion_tokens += ev.completion_tokens
                    continue
                texts[ev.index].append(ev.text)
                if ev.token is not None and ev.logprob is not None:
                    toks[ev.index].append(ev)
        if "error" in finish:
            raise RequestFailed(error(500, "the engine failed on this request (see the server log)", "server_error"))
        choices = []
        for i in range(self.choices):
            text, lp = "".join(texts[i]), self._logprobs(toks[i]) if toks[i] else None
            body = {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
            choices.append({"index": i, **body, "logprobs": lp, "finish_reason": finish[i]})
        return {**self._head(False), "choices": choices, "usage": self.usage()}

    async def sse(self, events: AsyncIterator[Event], include_usage: bool) -> AsyncIterator[str]:
        extra = {"usage": None} if include_usage else {}
        offsets = [0] * self.choices

        def chunk(choices: list[dict], **more) -> str:
            return f"data: {json.dumps({**self._head(True), 'choices': choices, **extra, **more})}\n\n"

        if self.chat:
            for i in range(self.choices):
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None}])
        try:
            async with contextlib.aclosing(events) as events:
                async for ev in events:
                    i = ev.index
                    if isinstance(ev, FinishEvent):
                        self.completion_tokens += ev.completion_tokens
                        if ev.reason == "error":
                            yield f"data: {json.dumps(_error_body(ev.message, 'server_error'))}\n\n"
                        body = {"delta": {}} if self.chat else {"text": ""}
                        yield chunk([{"index": i, **body, "logprobs": None, "finish_reason": ev.reason}])
                        continue
                    lp = self._logprobs([ev], offsets[i]) if ev.token is not None and ev.logprob is not None else None
                    offsets[i] += len(ev.text)
                    if ev.text or lp:
                        body = {"delta": {"content": ev.text}} if self.chat else {"text": ev.text}
                        yield chunk([{"index": i, **body, "logprobs": lp, "finish_reason": None}])
        except TimeoutError:
            timeout = _error_body("the request did not finish within the server's timeout", "timeout_error")
            yield f"data: {json.dumps(timeout)}\n\n"
        if include_usage:
            yield f"data: {json.dumps({**self._head(True), 'choices': [], 'usage': self.usage()})}\n\n"
        yield "data: [DONE]\n\n"


def _error_body(message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}
