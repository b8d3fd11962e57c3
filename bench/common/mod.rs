//! What every benchmark shares: settings from the environment, latency summaries, CPU and disk
//! probes, and the closed- and open-loop drivers that send requests and record what came back.
//!
//! Each benchmark is its own crate (`[[bench]]` with `harness = false`) and includes this module
//! with `mod common;`; none uses all of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A small deterministic generator, so every run draws the same customers.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// A positive, finite number from the environment, else `default`.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[index])
}

/// p50 / p99 / p99.9 / max / mean of a set of latencies, in milliseconds.
pub fn latency_json(samples: &mut [Duration]) -> Value {
    samples.sort();
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1000.0 / samples.len() as f64
    };
    json!({
        "samples": samples.len(),
        "p50": round3(percentile(samples, 0.5)),
        "p99": round3(percentile(samples, 0.99)),
        "p999": round3(percentile(samples, 0.999)),
        "max": round3(samples.last().map(|d| ms(*d)).unwrap_or(0.0)),
        "mean": round3(mean),
    })
}

/// `a / b` of two JSON numbers, rounded to three places; 0 when either is missing or `b` is 0.
pub fn ratio(a: &Value, b: &Value) -> f64 {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => round3(a / b),
        _ => 0.0,
    }
}

// ---------------------------------------------------------------- machine

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The device and file-system type the directory lives on, from `/proc/mounts`.
pub fn file_system(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            dir.starts_with(point).then(|| (point.len(), format!("{device} ({kind}) on {point}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time used so far, in USER_HZ ticks (100 per second on Linux): by this process, and by the
/// whole machine (busy = everything but idle and iowait; total = all).
#[derive(Clone, Copy)]
pub struct Cpu {
    process: u64,
    machine_busy: u64,
    machine_total: u64,
    at: Instant,
}

impl Cpu {
    pub fn now() -> Option<Cpu> {
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = own.rsplit_once(')')?.1;
        let fields: Vec<u64> =
            after_name.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // utime and stime are fields 14 and 15 of proc(5); `fields` starts at field 4.
        let process = fields.get(10)? + fields.get(11)?;
        let all = std::fs::read_to_string("/proc/stat").ok()?;
        let line = all.lines().next()?;
        let ticks: Vec<u64> =
            line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4)?;
        Some(Cpu { process, machine_busy: total - idle, machine_total: total, at: Instant::now() })
    }

    /// Cores used by this process and the machine's busy share since `self`; CPU ms per item.
    pub fn since(self, items: usize) -> Value {
        let Some(end) = Cpu::now() else { return Value::Null };
        let wall = end.at.duration_since(self.at).as_secs_f64();
        let process_s = (end.process - self.process) as f64 / 100.0;
        let busy = (end.machine_busy - self.machine_busy) as f64;
        let total = (end.machine_total - self.machine_total) as f64;
        json!({
            "processCores": round3(process_s / wall),
            "machineBusyShare": if total > 0.0 { round3(busy / total) } else { 0.0 },
            "processCpuMillisPerItem": if items > 0 { round3(process_s * 1000.0 / items as f64) } else { 0.0 },
        })
    }
}

/// `write` 4 KiB + sync, `samples` times (or for at most `max` time), at rotating offsets of a
/// preallocated 1 MiB file in `dir`; `data_only` uses `fdatasync` instead of `fsync`.
/// `impliedCommitsPerSecond` is 1000 / p50: the most durable commits one writer can make per
/// second if each costs one sync.
pub fn sync_probe(dir: &Path, samples: usize, max: Duration, data_only: bool) -> Value {
    const FILE: u64 = 1 << 20;
    const BLOCK: usize = 4096;
    let path = dir.join(if data_only { "fdatasync-probe" } else { "fsync-probe" });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.write_all(&vec![0u8; FILE as usize]).unwrap();
    file.sync_all().unwrap();
    let block = vec![0xA5u8; BLOCK];
    let mut latencies = Vec::with_capacity(samples);
    let started = Instant::now();
    for i in 0..samples {
        if started.elapsed() > max {
            break;
        }
        let t = Instant::now();
        file.seek(SeekFrom::Start((i as u64 * BLOCK as u64) % FILE)).unwrap();
        file.write_all(&block).unwrap();
        if data_only {
            file.sync_data().unwrap();
        } else {
            file.sync_all().unwrap();
        }
        latencies.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    let latency = latency_json(&mut latencies);
    let p50 = latency["p50"].as_f64().unwrap_or(0.0);
    json!({
        "call": if data_only { "fdatasync" } else { "fsync" },
        "blockBytes": BLOCK,
        "latencyMillis": latency,
        "impliedCommitsPerSecond": if p50 > 0.0 { round1(1000.0 / p50) } else { 0.0 },
    })
}

// ---------------------------------------------------------------- requests

/// An answer: status and body.
pub type Answer = (u16, Bytes);
/// Sends request number `n` (unique across the run) for draw `draw` of the generator.
pub type SendRequest =
    dyn Fn(u64, u64) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync;
/// Builds request number `n` for draw `draw`, for a router.
pub type MakeRequest = dyn Fn(u64, u64) -> Request<Body> + Send + Sync;

/// One request through the app's router, with no socket.
pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// A sender that passes the requests `make` builds to `app`.
pub fn through_router(app: &Router, make: Arc<MakeRequest>) -> Arc<SendRequest> {
    let app = app.clone();
    Arc::new(move |n, draw| {
        let (app, request) = (app.clone(), make(n, draw));
        Box::pin(async move { send(&app, request).await })
    })
}

/// What one phase of requests saw.
#[derive(Default)]
pub struct Phase {
    pub latencies: Vec<Duration>,
    pub service: Vec<Duration>,
    pub ok: usize,
    pub errors: BTreeMap<u16, usize>,
    pub first_error: Option<String>,
    pub dropped: usize,
    pub max_lag: Duration,
    pub seconds: f64,
    pub cpu: Value,
}

impl Phase {
    pub fn record(&mut self, latency: Duration, status: u16, body: &[u8]) {
        self.latencies.push(latency);
        if status == 200 {
            self.ok += 1;
        } else {
            *self.errors.entry(status).or_default() += 1;
            if self.first_error.is_none() {
                self.first_error = Some(String::from_utf8_lossy(body).chars().take(300).collect());
            }
        }
    }

    pub fn merge(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.service.extend(other.service);
        self.ok += other.ok;
        for (status, count) in other.errors {
            *self.errors.entry(status).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn errors(&self) -> usize {
        self.errors.values().sum()
    }

    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.ok as f64 / self.seconds } else { 0.0 }
    }

    /// The phase as JSON, with `extra`'s keys added.
    pub fn summary(&mut self, extra: Value) -> Value {
        let mut v = json!({
            "ok": self.ok,
            "errors": self.errors(),
            "errorsByStatus": self.errors.iter().map(|(s, c)| (s.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "seconds": round3(self.seconds),
            "okPerSecond": round1(self.rate()),
            "latencyMillis": latency_json(&mut self.latencies),
        });
        if let Some(e) = &self.first_error {
            v["firstError"] = json!(e);
        }
        if !self.cpu.is_null() {
            v["cpu"] = self.cpu.clone();
        }
        if !self.service.is_empty() {
            v["serviceMillis"] = latency_json(&mut self.service);
            v["dropped"] = json!(self.dropped);
            v["maxGeneratorLagMillis"] = json!(round3(ms(self.max_lag)));
        }
        if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
            v.extend(extra);
        }
        v
    }
}

/// `concurrency` tasks, each sending its next request as soon as the previous one is answered,
/// for `seconds` or until `max` requests were sent in all.
pub async fn closed_loop(
    send: &Arc<SendRequest>,
    sequence: &Arc<AtomicU64>,
    concurrency: usize,
    seconds: f64,
    max: usize,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let sent = Arc::new(AtomicUsize::new(0));
    let cpu = Cpu::now();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let (send, sequence, sent) = (send.clone(), sequence.clone(), sent.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Lcg(1_000 + task as u64);
            let mut phase = Phase::default();
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max {
                let t = Instant::now();
                let (status, body) =
                    send(sequence.fetch_add(1, Ordering::Relaxed), rng.next()).await;
                phase.record(t.elapsed(), status, &body);
            }
            phase
        }));
    }
    let mut phase = Phase::default();
    for handle in handles {
        phase.merge(handle.await.unwrap());
    }
    phase.seconds = started.elapsed().as_secs_f64();
    phase.cpu = cpu.map_or(Value::Null, |c| c.since(phase.ok + phase.errors()));
    phase
}

/// Requests started at `rate` per second for `seconds` (at most `max`), whatever the answers do;
/// latency counts from each request's scheduled start, `service` from its actual start. A
/// request due while `max_in_flight` are unanswered is dropped (counted, not sent).
pub async fn open_loop(
    send: &Arc<SendRequest>,
    sequence: &Arc<AtomicU64>,
    rate: f64,
    seconds: f64,
    (max, max_in_flight): (usize, usize),
) -> Phase {
    let total = ((rate * seconds).round() as usize).clamp(1, max.max(1));
    let interval = 1.0 / rate;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = Lcg(99);
    let mut phase = Phase::default();
    let mut handles = Vec::with_capacity(total);
    let cpu = Cpu::now();
    let start = Instant::now() + Duration::from_millis(5);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(interval * i as f64);
        tokio::time::sleep_until(due.into()).await;
        phase.max_lag = phase.max_lag.max(Instant::now().saturating_duration_since(due));
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            phase.dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = send(sequence.fetch_add(1, Ordering::Relaxed), rng.next());
        let in_flight = in_flight.clone();
        handles.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (status, body) = answer.await;
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            (done - due, done - sent, status, body)
        }));
    }
    for handle in handles {
        let (latency, service, status, body) = handle.await.unwrap();
        phase.record(latency, status, &body);
        phase.service.push(service);
    }
    phase.seconds = start.elapsed().as_secs_f64();
    phase.cpu = cpu.map_or(Value::Null, |c| c.since(phase.ok + phase.errors()));
    phase
}
