#!/usr/bin/env python3
"""Recall of the embedded vector search at several `hnsw_ef` (BENCHMARKS.md).

Seeds one premium tenant with about `--chunks` chunks of the load harness's
kind of text (pseudo-words of three syllables, drawn by a seeded
generator), waits until the embedded store has built its index, then
searches `--queries` new three-word queries at `top_k` 5 once per `ef`,
restarting the server on the same data dir with only
`ANALYZER_VECTOR_SEARCH_EF` changed, so every `ef` walks the same graph.
Each result is compared with the one at the widest `ef`: the share of its
hits found, and of hits scoring at least its fifth hit's score (ties
count as found).

Needs the release binary the load harness builds:

    cargo bench -p analyzer-tests --bench load --no-run
    python3 tests/load/recall.py --chunks 100000 --efs 32,64,100,512

Only the standard library; the server listens on loopback only.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "release" / "analyzer-under-test"
SECRET = "recall-probe-signing-secret-0123456789abcdef"
SYLLABLES = "ka lo mi ten ra vo shi pel dra nu qua zor bel fin gro hal jus mar nex ost pri sul tor ux".split()
VOCABULARY = len(SYLLABLES) ** 3


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
    parser.add_argument("--efs", default="32,64,100,512", help="the widest is the reference")
    parser.add_argument("--port", type=int, default=18011)
    args = parser.parse_args()
    efs = sorted({int(e) for e in args.efs.split(",")})
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo bench -p analyzer-tests --bench load --no-run")

    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, args.port)
        admin = server.cli("token", "mint", "--admin")
        tenant = server.call("POST", "/v1/admin/tenants", admin, {"name": "recall", "tier": "premium"})
        token = server.cli("token", "mint", "--tenant", tenant["id"], "--ttl", "86400")
        rng, stored, first, began = random.Random(7), 0, 0, time.monotonic()
        while stored < args.chunks:
            documents = [{"id": f"d{first + i}", "text": text(rng, 3000)} for i in range(100)]
            stored += server.call("POST", "/v1/documents", token, {"documents": documents})["chunks"]
            first += 100
        while not server.settled():
            time.sleep(2)
        print(f"seeded {stored} chunks and indexed them in {time.monotonic() - began:.0f} s")
        server.stop()

        results = {}
        for ef in efs:
            server = Server(data_dir, args.port, ef)
            queries = random.Random(99)
            results[ef] = []
            for q in range(args.queries):
                query = " ".join(word(queries.randrange(VOCABULARY)) for _ in range(3)) + f" zz{q}"
                hits = server.call("POST", "/v1/search", token, {"query": query, "top_k": 5})["hits"]
                results[ef].append([(h["document_id"], h["chunk"], h["score"]) for h in hits])
            server.stop()

    reference = results[efs[-1]]
    wanted = sum(len(r) for r in reference)
    print(f"\n| search `hnsw_ef` | hits also found at ef {efs[-1]} | hits as good as its fifth | mean score of the first hit |")
    print("| --- | --- | --- | --- |")
    for ef in efs:
        found = as_good = 0
        for ref, got in zip(reference, results[ef]):
            found += len({(d, c) for d, c, _ in ref} & {(d, c) for d, c, _ in got})
            if ref:
                as_good += sum(1 for _, _, score in got if score >= ref[-1][2] - 1e-6)
        first_hits = [got[0][2] for got in results[ef] if got]
        mean_first = sum(first_hits) / max(len(first_hits), 1)
        print(f"| {ef} | {found / wanted:.2f} | {as_good / wanted:.2f} | {mean_first:.3f} |")


if __name__ == "__main__":
    main()
