#!/usr/bin/env python3
"""Recall of the embedded search against an exact reckoning (docs/benchmarks.md).

Seeds one premium tenant with `--chunks` documents of the load harness's
kind of text (pseudo-words of three syllables, drawn by a seeded
generator), each shorter than one chunk, so that every chunk is a document
whose text this script knows. It waits until the embedded store has built
its indexes, then searches `--queries` new three-word queries at `top_k` 5
and compares each result with the true best five, reckoned here by the
built-in embedder's own arithmetic (its tokens, hashed features, sublinear
weights and unit length, ported below) over every document: the share of
the true hits returned, the share of returned hits scoring at least the
true fifth (ties count as found), and the largest difference between a
returned score and the true score of the same chunk.

Needs the release binary the load harness builds:

    cargo bench -p analyzer-tests --bench load --no-run
    python3 tests/load/recall.py --chunks 100000

`--ef` sets `ANALYZER_VECTOR_SEARCH_EF` (it does not apply to the built-in
embedder's sparse vectors, which are searched exactly). Only the standard
library; the server listens on loopback only.
"""

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ANALYZER_BINARY", ROOT / "target" / "release" / "analyzer-under-test"))
SECRET = "recall-probe-signing-secret-0123456789abcdef"
SYLLABLES = "ka lo mi ten ra vo shi pel dra nu qua zor bel fin gro hal jus mar nex ost pri sul tor ux".split()
VOCABULARY = len(SYLLABLES) ** 3
# services/analyzer/src/embed.rs: `is_stop_word`.
STOP_WORDS = set(
    "a an and are as at be by for from has have in is it its of on or that the this to was "
    "were will with what which who how do does did i we you they our your their".split()
)


def word(i):
    n = len(SYLLABLES)
    i %= VOCABULARY
    return SYLLABLES[i // (n * n)] + SYLLABLES[(i // n) % n] + SYLLABLES[i % n]


def text(rng, chars):
    out = ""
    while len(out) < chars:
        words = [word(rng.randrange(VOCABULARY)) for _ in range(8 + rng.randrange(8))]
        out += (" " if out else "") + " ".join(words).capitalize() + "."
    return out


def tokens(text):
    """`embed::tokens`: alphanumeric runs, lower-cased, stop words out, plurals folded."""
    out, current = [], []
    for c in text + " ":
        if c.isalnum():
            current.append(c)
        elif current:
            out.append("".join(current).lower())
            current = []
    stemmed = []
    for w in out:
        if w in STOP_WORDS:
            continue
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith("ss") and not w.endswith("us"):
            w = w[:-1]
        stemmed.append(w)
    return stemmed


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def embed(text):
    """`HashEmbedder::embed_one`: {dimension: value}, unit length."""
    counts = defaultdict(float)
    for word in tokens(text):
        h = fnv1a(word.encode())
        counts[(h ^ (h >> 32)) & 0xFFFFFFFF] += 1.0
    values = {i: math.log(1.0 + c) for i, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in values.values()))
    return {i: v / norm for i, v in values.items()} if norm > 0 else {}


class Server:
    def __init__(self, data_dir, port, ef=None):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "ANALYZER_DATA_DIR": str(data_dir),
            "ANALYZER_BIND": f"127.0.0.1:{port}",
            "JWT_SECRET": SECRET,
            "RUST_LOG": "warn",
            "ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE": "100000000",
            "ANALYZER_TIER_PREMIUM_VECTOR_STORAGE_BYTES": "107374182400",
        }
        if ef is not None:
            env["ANALYZER_VECTOR_SEARCH_EF"] = str(ef)
        self.env, self.base = env, f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(BINARY), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 600  # an unclean stop reconciles first
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the server exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        sys.exit("the server did not start within 10 minutes")

    def cli(self, *args):
        done = subprocess.run(
            [str(BINARY), *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def call(self, method, path, token, body=None):
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")

    def settled(self):
        metrics = urllib.request.urlopen(self.base + "/metrics", timeout=10).read().decode()
        pending = [l for l in metrics.splitlines() if l.startswith("analyzer_vector_maintenance_pending")]
        return bool(pending) and float(pending[0].split()[-1]) == 0.0

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", type=int, default=None)
    parser.add_argument("--port", type=int, default=18011)
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo bench -p analyzer-tests --bench load --no-run")

    rng = random.Random(7)
    # Below the chunk size (800 characters): one chunk per document.
    corpus = {f"d{i}": text(rng, 600) for i in range(args.chunks)}
    postings = defaultdict(list)
    for doc, body in corpus.items():
        for index, value in embed(body).items():
            postings[index].append((doc, value))

    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, args.port, args.ef)
        admin = server.cli("token", "mint", "--admin")
        tenant = server.call("POST", "/v1/admin/tenants", admin, {"name": "recall", "tier": "premium"})
        token = server.cli("token", "mint", "--tenant", tenant["id"], "--ttl", "86400")
        ids, began = list(corpus), time.monotonic()
        for at in range(0, len(ids), 200):
            documents = [{"id": d, "text": corpus[d]} for d in ids[at : at + 200]]
            chunks = server.call("POST", "/v1/documents", token, {"documents": documents})["chunks"]
            if chunks != len(documents):
                sys.exit(f"expected one chunk per document, got {chunks} for {len(documents)}")
        while not server.settled():
            time.sleep(2)
        print(f"seeded {len(ids)} chunks and indexed them in {time.monotonic() - began:.0f} s")

        queries = random.Random(99)
        wanted = found = as_good = 0
        worst = 0.0
        for q in range(args.queries):
            query = " ".join(word(queries.randrange(VOCABULARY)) for _ in range(3)) + f" zz{q}"
            scores = defaultdict(float)
            for index, value in embed(query).items():
                for doc, stored in postings.get(index, ()):
                    scores[doc] += value * stored
            truth = sorted(scores.items(), key=lambda kv: -kv[1])[:5]
            hits = server.call("POST", "/v1/search", token, {"query": query, "top_k": 5})["hits"]
            wanted += len(truth)
            found += len({d for d, _ in truth} & {h["document_id"] for h in hits})
            if truth:
                as_good += sum(1 for h in hits if h["score"] >= truth[-1][1] - 1e-5)
            for h in hits:
                worst = max(worst, abs(h["score"] - scores.get(h["document_id"], 0.0)))
            if len(hits) != len(truth):
                print(f"query {query!r}: {len(hits)} hits, {len(truth)} true", file=sys.stderr)
        server.stop()

    print(f"\n| chunks | queries | true hits returned | hits as good as the true fifth | largest score difference |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| {len(ids)} | {args.queries} | {found / max(wanted, 1):.3f} | "
        f"{as_good / max(wanted, 1):.3f} | {worst:.1e} |"
    )


if __name__ == "__main__":
    main()
