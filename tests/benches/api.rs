//! Latency of `GET /v1/agents` with many agents in one tenant, over real HTTP, against a
//! real nats-server with the projector and the API running.
//!
//! `cargo bench -p fleet-tests --bench api` (agents: FLEET_BENCH_AGENTS, default 10000;
//! requests: FLEET_BENCH_REQUESTS, default 200). Registers the agents with pipelined
//! appends, waits until the projector's agents model has applied them all, then sends the
//! requests one after another on one keep-alive connection (after 3 not counted) and prints
//! p50, p99, max and the response size. Beside it, in the same run: the projector query
//! alone (`ask` with `Query::Agents`), and `GET /v1/agents/{id}` (the same token check and
//! round trip to the projector, with a one-agent answer).
//!
//! The projector, the API and the benchmark each have their own NATS connection, as
//! separate `fleet serve` processes would.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_control::clock::Clock;
use fleet_control::projector::ProjectionStatus;
use fleet_control::projector::query::{Query, ask, request};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_control::tenant;
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, Role};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::samples;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_events::subject;
use fleet_tests::NatsServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Requests sent before the timed ones.
const WARM_UP: usize = 3;
/// How long the projector may take to apply the registrations.
const CATCH_UP: Duration = Duration::from_secs(120);

/// The projector's default page of agents.
fn agents_page() -> Query {
    Query::Agents {
        name: None,
        limit: None,
        offset: None,
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 connection that sends GETs and reads whole responses
/// (`Content-Length` or chunked bodies).
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true).expect("nodelay");
                    return Http {
                        stream: BufReader::new(stream),
                        host: addr.to_string(),
                    };
                }
                Err(e) if Instant::now() > deadline => panic!("the API does not listen: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// `GET path` with a bearer token: the status and the body.
    async fn get(&mut self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            self.host
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send");
        let status_line = self.line().await;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {status_line:?}"));
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("a length"));
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).expect("chunk");
                let mut chunk = vec![0; size];
                self.stream.read_exact(&mut chunk).await.expect("chunk");
                body.extend_from_slice(&chunk);
                self.line().await;
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.expect("a Content-Length or a chunked body"), 0);
            self.stream.read_exact(&mut body).await.expect("body");
        }
        (status, body)
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("read");
        line.trim_end_matches(['\r', '\n']).to_owned()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut latencies: Vec<Duration>, bytes: usize) {
    latencies.sort();
    println!(
        "  {what:<38} p50 {:>9.2?}   p99 {:>9.2?}   max {:>9.2?}   {bytes} bytes",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}

/// Registers `n` agents of `tenant` with pipelined appends, as the registrar would (each
/// agent's subject must be empty); returns them and the last sequence written.
async fn register(store: &EventStore, tenant: &TenantId, n: usize) -> (Vec<AgentId>, u64) {
    let agents: Vec<AgentId> = (0..n).map(|_| AgentId::generate()).collect();
    let envelopes: Vec<Envelope> = agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let event = AgentEvent::Registered {
                name: format!("host-{i:05}"),
                hostname: format!("host-{i:05}.example.net"),
                settings: samples::agent_settings(),
            };
            let event = Event::Agent {
                agent: *agent,
                event,
            };
            Envelope::new(tenant.clone(), Utc::now(), event)
        })
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| format!("register:{a}")).collect();
    let results = store
        .append_many(envelopes.iter().zip(&ids).map(|(envelope, msg_id)| Append {
            envelope,
            msg_id,
            expect: Expect::LastSeq(0),
        }))
        .await;
    let last = results
        .iter()
        .map(|r| r.as_ref().expect("registered").seq)
        .max()
        .unwrap_or(0);
    (agents, last)
}

/// Waits until the projector's agents model has applied sequence `last`.
async fn caught_up(client: &async_nats::Client, last: u64) -> Duration {
    let start = Instant::now();
    loop {
        let answer = request(client, subject::projections_status(), b"{}".to_vec()).await;
        let rows: Vec<ProjectionStatus> = answer
            .ok()
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        if rows
            .iter()
            .any(|row| row.projection == "agents" && row.checkpoint >= last)
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < CATCH_UP,
            "the projector did not apply the registrations: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected_store(url: &str) -> EventStore {
    EventStore::new(async_nats::connect(url).await.expect("connect"))
}

fn main() -> ExitCode {
    let n = env_or("FLEET_BENCH_AGENTS", 10_000);
    let requests = env_or("FLEET_BENCH_REQUESTS", 200).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = NatsServer::start().expect("nats-server");
        let store = connected_store(&server.url()).await;
        store.ensure_streams(&StreamOptions::default()).await.expect("streams");
        let client = store.jetstream().client();
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let config = ServiceConfig {
            clock: Clock::System,
            circuit: Default::default(),
            dispatcher: Default::default(),
            projections_dir: Some(dir.path().to_owned()),
            history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
            api_addr: Some(addr),
            api_throttle: Default::default(),
            api_tls: None,
            access: None,
            notifier: Default::default(),
            snapshots: Default::default(),
        };
        let stop = CancellationToken::new();
        let mut services = Vec::new();
        for service in [Service::Projector, Service::Api] {
            let (store, config, stop) =
                (connected_store(&server.url()).await, config.clone(), stop.clone());
            services.push(tokio::spawn(async move {
                fleet_control::serve::run(service, store, config, stop).await
            }));
        }

        let tenant = TenantId::new("bench").expect("slug");
        tenant::create(&store, &tenant, "Bench", Utc::now()).await.expect("tenant");
        let admin = tenant::issue(&store, &tenant, Role::Admin, "bench", Utc::now())
            .await
            .expect("token");
        let token = admin.text.expose();
        let start = Instant::now();
        let (agents, last) = register(&store, &tenant, n).await;
        let appended = start.elapsed();
        let applied = caught_up(&client, last).await;
        println!("GET /v1/agents with {n} agents of one tenant, {requests} sequential requests on one keep-alive connection");
        println!(
            "  {n} registrations appended in {appended:.2?}; the projector had them {applied:.2?} later"
        );

        let mut http = Http::connect(addr).await;
        let path = format!("/v1/agents/{}", agents[0]);
        let (mut one, mut one_bytes) = (Vec::with_capacity(requests), 0);
        for i in 0..WARM_UP + requests {
            let start = Instant::now();
            let (status, body) = http.get(&path, token).await;
            let took = start.elapsed();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            if i >= WARM_UP {
                one.push(took);
                one_bytes = body.len();
            }
        }

        // Every agent is listed, a page of at most 1000 at a time.
        let start = Instant::now();
        let mut listed = 0;
        loop {
            let path = format!("/v1/agents?limit=1000&offset={listed}");
            let (status, body) = http.get(&path, token).await;
            let page = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len));
            match (status, page) {
                (200, Some(0)) => break,
                (200, Some(len)) => listed += len,
                _ => {
                    println!(
                        "  GET {path} failed: status {status}, {} bytes: {}",
                        body.len(),
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    );
                    stop.cancel();
                    return ExitCode::FAILURE;
                }
            }
        }
        let walk = start.elapsed();
        if listed != n {
            println!("  the pages listed {listed} agents, not {n}");
            stop.cancel();
            return ExitCode::FAILURE;
        }
        println!("  all {n} agents listed in pages of 1000 in {walk:.2?}");
        let late_page = format!("/v1/agents?limit=1000&offset={}", n.saturating_sub(1000));
        let mut list = Vec::with_capacity(requests);
        let mut late = Vec::with_capacity(requests);
        let (mut list_bytes, mut late_bytes) = (0, 0);
        for _ in 1..WARM_UP {
            http.get("/v1/agents", token).await;
        }
        for _ in 0..requests {
            let start = Instant::now();
            let (status, body) = http.get("/v1/agents", token).await;
            list.push(start.elapsed());
            assert_eq!(status, 200);
            list_bytes = body.len();
            let start = Instant::now();
            let (status, body) = http.get(&late_page, token).await;
            late.push(start.elapsed());
            assert_eq!(status, 200);
            late_bytes = body.len();
        }

        let (mut query, mut query_bytes) = (Vec::with_capacity(requests), 0);
        for i in 0..WARM_UP + requests {
            let start = Instant::now();
            let value = ask(&client, &tenant, &agents_page()).await.expect("answered");
            let took = start.elapsed();
            if i >= WARM_UP {
                query.push(took);
                query_bytes = serde_json::to_vec(&value).map_or(0, |v| v.len());
            }
        }
        report("GET /v1/agents (first 500)", list, list_bytes);
        report("GET /v1/agents, last 1000", late, late_bytes);
        report("query alone (first 500)", query, query_bytes);
        report("GET /v1/agents/{id}", one, one_bytes);

        stop.cancel();
        for service in services {
            service.await.expect("joined").expect("the service ran");
        }
        ExitCode::SUCCESS
    })
}
