//! `stipple serve` on loopback: error codes, the bounded queue, batching, the streamed
//! canvas, disconnects, SIGTERM, a bounded load test, and the real OpenAI Python client
//! and A1111-style `requests` calls (tests/serve/clients.py) against the CLI's results.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TEXT: &str = "stipple-mini-text";

/// A server on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stipple"))
            .args(["serve", "--port", "0", "--quiet"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stipple serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the address line");
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        request(self.port, "POST", path, &[], body.to_string().as_bytes())
    }

    fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, &[], b"")
    }

    /// A counter's value in /metrics.
    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The `data:` payloads of a server-sent event stream, with their event names.
    fn events(&self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for block in self.text().split("\n\n") {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            if let Some(d) = data {
                out.push((name, d));
            }
        }
        out
    }
}

/// One HTTP/1.1 request on a fresh connection (plain sockets: the test sees exactly
/// what goes over the wire, chunked bodies decoded).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // a body past the server's limit may be refused before it is all sent
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Reply { status, headers, body }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

fn completion(prompt: &str, max_tokens: usize, extra: Value) -> Value {
    let mut body = json!({ "model": TEXT, "prompt": prompt, "max_tokens": max_tokens });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn error_of(r: &Reply) -> Value {
    r.json()["error"].clone()
}

#[test]
fn bad_requests_get_openai_errors_with_the_right_codes() {
    let s = Server::start(&["--max-body", "4K", "--music-model", "none"]);
    let malformed = request(s.port, "POST", "/v1/completions", &[], b"{\"model\": ");
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert_eq!(error_of(&malformed)["type"], "invalid_request_error");

    let wrong_type = s.post("/v1/completions", &json!({ "model": TEXT, "prompt": "x", "max_tokens": "many" }));
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.text());
    assert_eq!(error_of(&wrong_type)["param"], "max_tokens");

    let unknown = s.post("/v1/chat/completions", &json!({ "model": "gpt-9", "messages": [{ "role": "user", "content": "hi" }] }));
    assert_eq!(unknown.status, 404);
    assert_eq!(error_of(&unknown)["code"], "model_not_found");
    let music = s.post("/v1/audio/generations", &json!({ "prompt": "drums" }));
    assert_eq!(music.status, 404, "no music model is served: {}", music.text());

    let big = format!("{{\"model\": \"{TEXT}\", \"prompt\": \"{}\"}}", "a".repeat(8 << 10));
    let oversized = request(s.port, "POST", "/v1/completions", &[], big.as_bytes());
    assert_eq!(oversized.status, 413, "{}", oversized.text());
    assert_eq!(error_of(&oversized)["code"], "request_too_large");

    for (body, param) in [
        (completion("x", 8, json!({ "temperature": -1.0 })), None),
        (completion("x", 0, json!({})), Some("max_tokens")),
        (completion("x", 8, json!({ "n": 99 })), Some("n")),
        (completion("x", 8, json!({ "stipple": { "remasking": "sideways" } })), Some("stipple.remasking")),
        (completion("x", 8, json!({ "stipple": { "steps": 0 } })), None),
    ] {
        let r = s.post("/v1/completions", &body);
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        if let Some(p) = param {
            assert_eq!(error_of(&r)["param"], p, "{}", r.text());
        }
    }
    let images = s.post("/v1/images/generations", &json!({ "prompt": "x", "size": "33x32" }));
    assert_eq!(images.status, 422, "{}", images.text());
    let url = s.post("/v1/images/generations", &json!({ "prompt": "x", "response_format": "url" }));
    assert_eq!(url.status, 422);
    let huge = s.post("/sdapi/v1/txt2img", &json!({ "prompt": "x", "batch_size": u64::MAX, "n_iter": u64::MAX }));
    assert_eq!(huge.status, 422, "{}", huge.text());
    let bad_picture = s.post("/sdapi/v1/img2img", &json!({ "prompt": "x", "init_images": ["bm90IGEgcGljdHVyZQ=="] }));
    assert_eq!(bad_picture.status, 422, "{}", bad_picture.text());

    // the prompt is longer than the model reads (stipple-mini reads 128 tokens)
    let long = s.post("/v1/completions", &completion(&"word ".repeat(200), 8, json!({})));
    assert_eq!(long.status, 400, "{}", long.text());
    assert_eq!(error_of(&long)["code"], "context_length_exceeded");

    // a length past any context, not a whole number of the model's blocks
    let endless = s.post("/v1/completions", &completion("x", usize::MAX, json!({})));
    assert_eq!((endless.status, error_of(&endless)["code"].as_str()), (400, Some("context_length_exceeded")), "{}", endless.text());

    let nowhere = s.get("/v2/nothing");
    assert_eq!(nowhere.status, 404);
    assert!(error_of(&nowhere)["message"].as_str().unwrap().contains("/v2/nothing"));
    // the server is still up and answers
    assert_eq!(s.post("/v1/completions", &completion("Once", 4, json!({}))).status, 200);
    assert!(s.metric("stipple_errors_total{code=\"422\"}") >= 8.0);
}

#[test]
fn the_api_key_is_required_except_for_health_and_metrics() {
    let s = Server::start(&["--api-key", "sk-test-123", "--music-model", "none"]);
    let body = completion("Once", 4, json!({})).to_string();
    let none = request(s.port, "POST", "/v1/completions", &[], body.as_bytes());
    assert_eq!(none.status, 401);
    assert_eq!(error_of(&none)["code"], "invalid_api_key");
    let wrong = request(s.port, "POST", "/v1/completions", &[("Authorization", "Bearer sk-test-124")], body.as_bytes());
    assert_eq!(wrong.status, 401);
    let right = request(s.port, "POST", "/v1/completions", &[("Authorization", "Bearer sk-test-123")], body.as_bytes());
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/metrics").status, 200);
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let s = Arc::new(Server::start(&["--queue", "1", "--text-model", "none", "--music-model", "none"]));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (s, statuses) = (s.clone(), statuses.clone());
            std::thread::spawn(move || {
                let r = s.post("/v1/images/generations", &json!({ "prompt": "a heart", "stipple": { "seed": i, "steps": 40 } }));
                statuses.lock().unwrap().push((r.status, r.header("retry-after").map(str::to_string)));
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let statuses = statuses.lock().unwrap();
    let refused: Vec<_> = statuses.iter().filter(|(c, _)| *c == 429).collect();
    assert!(statuses.iter().all(|(c, _)| *c == 200 || *c == 429), "{statuses:?}");
    // one waits (and runs); the others are refused while it waits, or admitted once the
    // worker has taken it
    assert!(!refused.is_empty() && refused.len() <= 5, "one waits, the rest may be refused: {statuses:?}");
    assert!(refused.iter().all(|(_, ra)| ra.as_deref().and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v >= 1)), "{statuses:?}");
}

#[test]
fn batched_text_requests_equal_the_same_requests_alone() {
    let prompts = ["Once upon a time", "The king", "To be or not", "O Romeo", "Friends, Romans", "Now is the winter", "All the world", "What light"];
    let alone = Server::start(&["--max-batch", "1", "--image-model", "none", "--music-model", "none"]);
    // greedy (the model's own default samples, and sampled requests are never batched)
    let greedy = json!({ "temperature": 0.0 });
    let want: Vec<Value> = prompts.iter().map(|p| alone.post("/v1/completions", &completion(p, 24, greedy.clone())).json()["choices"][0]["text"].clone()).collect();
    drop(alone);
    let s = Arc::new(Server::start(&["--max-batch", "8", "--image-model", "none", "--music-model", "none"]));
    // a long job first, so the others queue up behind it and are decoded as a batch
    let blocker = {
        let s = s.clone();
        std::thread::spawn(move || s.post("/v1/completions", &completion("Long", 96, json!({ "stipple": { "steps": 96 } }))).status)
    };
    std::thread::sleep(Duration::from_millis(150));
    let threads: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (s, p, greedy) = (s.clone(), p.to_string(), greedy.clone());
            std::thread::spawn(move || s.post("/v1/completions", &completion(&p, 24, greedy)).json()["choices"][0]["text"].clone())
        })
        .collect();
    let got: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(blocker.join().unwrap(), 200);
    assert_eq!(got, want);
    let (runs, rows) = (s.metric("stipple_text_runs_total"), s.metric("stipple_text_batched_requests_total"));
    assert_eq!(rows, 9.0);
    assert!(runs < rows, "requests were batched: {runs} runs for {rows} requests");
}

/// The CLI's text for the same request.
fn cli_text(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stipple")).arg("--json").args(args).output().expect("run stipple");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn streams_send_finished_blocks_and_the_canvas_when_asked() {
    let s = Server::start(&["--image-model", "none", "--music-model", "none"]);
    let body = completion("Once upon a time", 32, json!({ "stream": true, "seed": 4, "stipple": { "block_length": 8, "canvas": true } }));
    let r = s.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = r.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let canvases: Vec<Value> = events.iter().filter(|(n, _)| n.as_deref() == Some("stipple.canvas")).map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(canvases.len(), 32, "one canvas per step");
    let masked: Vec<u64> = canvases.iter().map(|c| c["masked"].as_u64().unwrap()).collect();
    assert!(masked.windows(2).all(|w| w[1] < w[0]) && masked[31] == 0, "{masked:?}");
    let first = &canvases[0]["tokens"];
    assert_eq!(first.as_array().unwrap().len(), 32);
    assert_eq!(first.as_array().unwrap().iter().filter(|t| t.is_null()).count(), 31);
    assert!(first.as_array().unwrap().iter().any(|t| t["confidence"].as_f64().is_some_and(|c| c > 0.0 && c <= 1.0)));
    let chunks: Vec<Value> = events.iter().filter(|(n, d)| n.is_none() && d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let deltas: Vec<&str> = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert!(deltas.iter().filter(|d| !d.is_empty()).count() >= 4, "the text came in pieces as blocks finished: {deltas:?}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    let streamed: String = deltas.concat();
    let whole = s.post("/v1/completions", &completion("Once upon a time", 32, json!({ "seed": 4, "stipple": { "block_length": 8 } }))).json();
    assert_eq!(whole["choices"][0]["text"].as_str().unwrap(), streamed);
    assert_eq!(streamed, cli_text(&["--seed", "4", "text", "Once upon a time", "--raw", "--gen-len", "32", "--block-len", "8"]));
    // a stop text ends the stream early, left out of the text
    let cut = streamed.split_whitespace().nth(3).unwrap().to_string();
    let stopped = s.post("/v1/completions", &completion("Once upon a time", 32, json!({ "stream": true, "seed": 4, "stop": [cut.clone()], "stipple": { "block_length": 8 } })));
    let text: String = stopped.events().iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(text, streamed[..streamed.find(&cut).unwrap()]);
}

#[test]
fn n_completions_take_consecutive_seeds_and_stop_texts_cut_them() {
    let s = Server::start(&["--image-model", "none", "--music-model", "none"]);
    let two = s.post("/v1/chat/completions", &json!({ "model": TEXT, "messages": [{ "role": "user", "content": "The king" }], "max_tokens": 16, "n": 2, "seed": 5 })).json();
    let choices = two["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (k, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], k);
        let alone = s.post("/v1/chat/completions", &json!({ "model": TEXT, "messages": [{ "role": "user", "content": "The king" }], "max_tokens": 16, "seed": 5 + k })).json();
        assert_eq!(c["message"]["content"], alone["choices"][0]["message"]["content"]);
    }
    let tokens = two["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens <= 32, "both completions' tokens, up to end-of-text: {tokens}");
    let text = choices[0]["message"]["content"].as_str().unwrap().to_string();
    let word = text.split_whitespace().nth(1).expect("two words").to_string();
    let cut = s.post("/v1/chat/completions", &json!({ "model": TEXT, "messages": [{ "role": "user", "content": "The king" }], "max_tokens": 16, "seed": 5, "stop": word })).json();
    assert_eq!(cut["choices"][0]["message"]["content"].as_str().unwrap(), &text[..text.find(&word).unwrap()]);
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    // several prompts in one completion request: a choice each, in order
    let many = s.post("/v1/completions", &json!({ "model": TEXT, "prompt": ["Once", "The king"], "max_tokens": 8, "temperature": 0.0, "echo": true })).json();
    let texts: Vec<&str> = many["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert!(texts.len() == 2 && texts[0].starts_with("Once") && texts[1].starts_with("The king"), "{texts:?}");
}

/// Starts a long streamed request, reads its first event and hangs up; returns how long
/// that request would have run.
fn hang_up_mid_stream(s: &Server) {
    let body = completion("Once upon a time", 120, json!({ "stream": true, "stipple": { "steps": 120, "canvas": true } })).to_string();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    drop(c);
}

#[test]
fn a_client_that_hangs_up_cancels_its_generation() {
    let s = Server::start(&["--image-model", "none", "--music-model", "none"]);
    // how long the long request takes when it runs to the end
    let t = Instant::now();
    assert_eq!(s.post("/v1/completions", &completion("Once upon a time", 120, json!({ "stipple": { "steps": 120 } }))).status, 200);
    let full = t.elapsed();
    hang_up_mid_stream(&s);
    let t = Instant::now();
    let next = s.post("/v1/completions", &completion("The king", 4, json!({})));
    let waited = t.elapsed();
    assert_eq!(next.status, 200);
    assert!(waited < full / 2, "the next request waited {waited:?}; the abandoned one takes {full:?}");
    assert_eq!(s.metric("stipple_cancelled_total"), 1.0);

    // a plain (unstreamed) request whose client leaves is cancelled as well
    let body = completion("Once upon a time", 120, json!({ "stipple": { "steps": 120 } })).to_string();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let deadline = Instant::now() + full;
    while s.metric("stipple_cancelled_total") < 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.metric("stipple_cancelled_total"), 2.0);
}

#[test]
fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let mut s = Server::start(&["--text-model", "none", "--music-model", "none"]);
    let port = s.port;
    let in_flight = std::thread::spawn(move || request(port, "POST", "/v1/images/generations", &[], json!({ "prompt": "a heart", "stipple": { "steps": 60, "seed": 1 } }).to_string().as_bytes()));
    std::thread::sleep(Duration::from_millis(300));
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "the request in flight finished: {}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "no longer listening");
}

#[test]
fn load_test_mixed_text_and_images() {
    let s = Arc::new(Server::start(&["--queue", "24", "--music-model", "none"]));
    let total = 200usize;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let t = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (s, next, results) = (s.clone(), next.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= total {
                        return;
                    }
                    let started = Instant::now();
                    let (kind, r) = match i % 4 {
                        0 => ("image", s.post("/v1/images/generations", &json!({ "prompt": "a heart", "stipple": { "seed": i, "steps": 10 } }))),
                        1 => ("chat", s.post("/v1/chat/completions", &json!({ "model": TEXT, "messages": [{ "role": "user", "content": format!("Tell me {i}") }], "max_tokens": 32, "temperature": 0.0 }))),
                        2 => ("completion", s.post("/v1/completions", &completion(&format!("Once upon a time {i}"), 32, json!({ "temperature": 0.0 })))),
                        _ => ("sampled", s.post("/v1/completions", &completion(&format!("Once upon a time {i}"), 32, json!({ "seed": i })))),
                    };
                    let ok = r.status == 200 && {
                        let v = r.json();
                        match kind {
                            "image" => v["data"][0]["b64_json"].as_str().is_some_and(|b| b.len() > 100),
                            "chat" => v["choices"][0]["message"]["content"].is_string(),
                            _ => v["choices"][0]["text"].is_string() && v["usage"]["completion_tokens"].as_u64().is_some(),
                        }
                    };
                    results.lock().unwrap().push((kind, r.status, ok, started.elapsed().as_secs_f64()));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let wall = t.elapsed().as_secs_f64();
    let results = results.lock().unwrap();
    assert_eq!(results.len(), total);
    for (kind, status, ok, _) in results.iter() {
        assert!(*status == 429 || (*status == 200 && *ok), "{kind}: {status}");
    }
    let mut lat: Vec<f64> = results.iter().filter(|r| r.1 == 200).map(|r| r.3).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let refused = results.iter().filter(|r| r.1 == 429).count();
    let (runs, rows) = (s.metric("stipple_text_runs_total"), s.metric("stipple_text_batched_requests_total"));
    println!(
        "load: {total} requests (1/4 images 32x32 10 steps, 1/2 greedy text 32 tokens, 1/4 sampled text), 16 concurrent: {} ok, {refused} refused (429), p50 {:.3} s, p99 {:.3} s, {:.1} requests/s, text batches {rows}/{runs} = {:.2} requests per run",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.len() as f64 / wall,
        rows / runs
    );
    assert!(lat.len() >= total / 2, "most requests were served");
}

/// The real `openai` Python client and `requests` (A1111's call shape) against the server,
/// each result compared with the CLI's for the same seed (tests/serve/clients.py). Needs a
/// Python with openai, requests and pillow: $STIPPLE_PYTHON, else python3; skipped when it
/// lacks them unless STIPPLE_REQUIRE_PY_CLIENTS=1 (CI sets it).
#[test]
fn openai_and_a1111_python_clients() {
    let python = std::env::var("STIPPLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python).args(["-c", "import openai, requests, PIL"]).output().is_ok_and(|o| o.status.success());
    if !has {
        assert!(std::env::var_os("STIPPLE_REQUIRE_PY_CLIENTS").is_none(), "{python} lacks openai/requests/pillow (pip install openai requests pillow)");
        eprintln!("skipped: {python} lacks openai, requests or pillow");
        return;
    }
    let s = Server::start(&["--api-key", "sk-clients"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve/clients.py");
    let work = std::env::temp_dir().join(format!("stipple-serve-clients-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(&python).args([script, &s.base(), env!("CARGO_BIN_EXE_stipple"), "sk-clients"]).arg(&work).output().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The Kubernetes example's container command, run here (the binary and models from this
/// build, loopback, a free port): its readiness probe's path answers 200 once the models
/// have loaded, the probe's port is the one it listens on, and the pod's grace period
/// covers the server's own.
#[test]
fn the_kubernetes_example_serves_and_is_ready() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/stipple-serve.yaml")).unwrap();
    let field = |key: &str| -> String {
        let line = yaml.lines().map(str::trim).find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in the example"));
        line[key.len()..].trim().to_string()
    };
    let command: Vec<String> = serde_json::from_str(&field("command:")).expect("the command as a flow list");
    assert_eq!(command[0], "/data/bin/stipple");
    let arg = |name: &str| command.iter().position(|a| a == name).map(|i| command[i + 1].clone()).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(arg("--port"), field("containerPort:"));
    let grace: u64 = arg("--shutdown-grace").parse().unwrap();
    assert!(field("terminationGracePeriodSeconds:").parse::<u64>().unwrap() > grace);
    assert_eq!(field("path:"), "/health");
    assert_eq!(command[1], "serve");
    let args: Vec<String> = command[2..]
        .chunks(2)
        .flat_map(|kv| match kv[0].as_str() {
            "--host" => vec!["--host".to_string(), "127.0.0.1".into()],
            "--port" => vec![],
            _ => kv.to_vec(),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&args);
    let health = s.get(&field("path:"));
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
}

/// A1111's progress endpoint while a picture is being made: the step, and a preview image.
#[test]
fn a1111_progress_reports_the_running_picture_with_a_preview() {
    let s = Server::start(&["--text-model", "none", "--music-model", "none"]);
    let port = s.port;
    let job = std::thread::spawn(move || request(port, "POST", "/sdapi/v1/txt2img", &[], json!({ "prompt": "a heart", "steps": 150, "seed": 2 }).to_string().as_bytes()));
    let t = Instant::now();
    let mut seen = None;
    while seen.is_none() && t.elapsed() < Duration::from_secs(60) {
        let p = s.get("/sdapi/v1/progress").json();
        if p["progress"].as_f64().unwrap() > 0.0 && p["current_image"].is_string() {
            seen = Some(p);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let p = seen.expect("a progress report with a preview while the picture was made");
    assert_eq!(p["state"]["sampling_steps"], 150);
    assert!(p["eta_relative"].as_f64().unwrap() > 0.0);
    let preview = base64_decode(p["current_image"].as_str().unwrap());
    assert_eq!(&preview[1..4], b"PNG");
    assert_eq!(job.join().unwrap().status, 200);
    let idle = s.get("/sdapi/v1/progress").json();
    assert_eq!((idle["progress"].as_f64(), idle["current_image"].is_null()), (Some(0.0), true));
}

/// Standard base64 (the test's own decoder, to check the server's encoding independently).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
