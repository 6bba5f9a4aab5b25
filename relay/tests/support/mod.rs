//! Shared by the relay's integration tests: the real `relay` binary on
//! 127.0.0.1 (port 0, a temporary store), killed for real; WebSocket and
//! HTTP clients; ops made by the same core the tabs run.

#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod load;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{
    Ack, ClientMessage, Hello, Ping, Push, ServerMessage, Snapshot, StreamId, Subscription,
};
use gaesup_relay::config::DEV_SECRET;
use gaesup_relay::token::{Access, Claims, Grant};
use gaesup_state_core::{KeySpec, ManualClock, Op, Replica, SharedKey, TabId, UnitAddress};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for anything before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Which store a relay runs on: the behaviour suite runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store in a temporary directory.
    Sqlite,
    /// A `redis-server` of its own (temporary directory, port chosen at run
    /// time, AOF with `appendfsync always`).
    Redis,
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::<name>` and
/// `redis::<name>`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$test(super::support::Backend::Sqlite).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$test(super::support::Backend::Redis).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A `redis-server` process of a test's own: 127.0.0.1, a port chosen at
/// run time, a temporary directory, persistence on (AOF, `appendfsync
/// always`), killed for real.
pub struct RedisServer {
    child: std::sync::Mutex<Option<Child>>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one (on another free port if the one picked was taken in the
    /// meantime by a parallel test).
    pub fn start() -> Arc<Self> {
        let mut dir = tempfile::tempdir().unwrap();
        for _ in 0..10 {
            let port = quiet_port();
            let server = Self {
                child: std::sync::Mutex::new(None),
                port,
                dir,
            };
            if server.spawn() {
                return Arc::new(server);
            }
            dir = server.into_dir();
        }
        panic!("redis-server did not start on any of ten ports");
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Starts the process and waits until it answers; `false` if it exited
    /// first (its port was taken).
    fn spawn(&self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}): `cargo xtask setup` installs it")
            });
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready()
    }

    /// Waits until it answers PING (after loading its AOF); `false` if the
    /// process exited.
    fn wait_ready(&self) -> bool {
        use std::io::{Read, Write};
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && &answer == b"+PONG\r\n"
                {
                    // Another test's Redis may hold the port (ours then
                    // exits, perhaps only after this PONG).
                    return self.pid().is_some_and(|pid| Self::answers_as(stream, pid));
                }
            }
            if let Some(child) = self.child.lock().unwrap().as_mut()
                && child.try_wait().unwrap().is_some()
            {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of our redis-server, if it runs.
    fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Whether the Redis on the other end of `stream` is the process
    /// `pid` (by its `INFO server`).
    fn answers_as(mut stream: std::net::TcpStream, pid: u32) -> bool {
        use std::io::{BufRead, BufReader, Read, Write};
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        if stream.write_all(b"INFO server\r\n").is_err() {
            return false;
        }
        // A bulk reply: `$<length>\r\n`, the text, `\r\n`.
        let mut reader = BufReader::new(stream);
        let mut header = String::new();
        let Some(length) = reader
            .read_line(&mut header)
            .ok()
            .and_then(|_| header.trim().strip_prefix('$')?.parse::<usize>().ok())
        else {
            return false;
        };
        let mut text = vec![0u8; length];
        reader.read_exact(&mut text).is_ok()
            && String::from_utf8_lossy(&text)
                .lines()
                .any(|line| line.trim() == format!("process_id:{pid}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: whatever was not fsynced is gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL, then start again on the same port and directory.
    pub fn restart(&self) {
        self.kill();
        assert!(self.spawn(), "redis-server did not start again on its port");
    }
}

/// A loopback port that is free now, below the kernel's ephemeral range
/// (16384 to 32767 with Linux's default range, 32768 to 60999): outgoing
/// connections take their own ports from that range, so while the Redis
/// a test kills is down, none of them can take its port before it starts
/// again there. Where there is no such range (not Linux), a port the
/// kernel picks.
fn quiet_port() -> u16 {
    let free = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .ok()
    };
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low >= 2048);
    let Some(low) = low else {
        return free(0).unwrap();
    };
    // Parallel tests start at random places, each going up from there.
    let span = u64::from(low / 2);
    let start = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    (0..256)
        .map(|step| low / 2 + u16::try_from(start.wrapping_add(step) % span).unwrap())
        .find_map(free)
        .or_else(|| free(0))
        .unwrap()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running relay process.
pub struct Relay {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    args: Vec<String>,
    redis: Option<Arc<RedisServer>>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Relay {
    /// Starts the relay on a fresh store with `args` added.
    pub fn start(args: &[&str]) -> Self {
        Self::on(Backend::Sqlite, args)
    }

    /// Starts the relay on a fresh store of `backend` with `args` added.
    pub fn on(backend: Backend, args: &[&str]) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let data = dir.path().join("data");
                Self::spawned(data, None, Some(Arc::new(dir)), args)
            }
            Backend::Redis => Self::node(&RedisServer::start(), args),
        }
    }

    /// A relay node on `redis`, beside any others on it.
    pub fn node(redis: &Arc<RedisServer>, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("unused");
        Self::spawned(data, Some(Arc::clone(redis)), Some(Arc::new(dir)), args)
    }

    /// Starts the relay on an existing store.
    pub fn start_on(data: &Path, args: &[&str]) -> Self {
        Self::spawned(data.to_owned(), None, None, args)
    }

    /// Another relay process on this one's store (its data directory or
    /// its Redis).
    pub fn successor(&self, args: &[&str]) -> Self {
        Self::spawned(
            self.data.clone(),
            self.redis.clone(),
            self._dir.clone(),
            args,
        )
    }

    fn spawned(
        data: PathBuf,
        redis: Option<Arc<RedisServer>>,
        dir: Option<Arc<tempfile::TempDir>>,
        args: &[&str],
    ) -> Self {
        let mut relay = Self {
            child: None,
            port: 0,
            data,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            redis,
            _dir: dir,
        };
        relay.spawn();
        relay
    }

    /// The Redis this relay runs on, if any.
    pub fn redis(&self) -> Option<&Arc<RedisServer>> {
        self.redis.as_ref()
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
        if let Some(redis) = &self.redis {
            command.args(["--redis", &redis.url()]);
        }
        let mut child = command
            .args(["--dev", "--listen", "127.0.0.1:0", "--data"])
            .arg(&self.data)
            .args(&self.args)
            .env("RELAY_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the relay said {line:?}"));
        self.port = port;
        self.child = Some(child);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no shutdown, no flush, mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL, then start again on the same store (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token signed with the development secret.
pub fn token(apartments: &[(&str, Access, Option<&[&str]>)], global: Option<Access>) -> String {
    token_until(apartments, global, now_s() + 3600)
}

pub fn token_until(
    apartments: &[(&str, Access, Option<&[&str]>)],
    global: Option<Access>,
    exp: u64,
) -> String {
    mint_for("test", apartments, global, exp)
}

/// Read-write on apartment `main` and the global keys, for the token
/// subject `sub` (another person, or another account's devices).
pub fn main_rw_as(sub: &str) -> String {
    mint_for(
        sub,
        &[("main", Access::Rw, None)],
        Some(Access::Rw),
        now_s() + 3600,
    )
}

fn mint_for(
    sub: &str,
    apartments: &[(&str, Access, Option<&[&str]>)],
    global: Option<Access>,
    exp: u64,
) -> String {
    let claims = Claims {
        sub: sub.into(),
        exp,
        apartments: apartments
            .iter()
            .map(|(id, access, buildings)| {
                (
                    id.parse().unwrap(),
                    Grant {
                        access: *access,
                        buildings: buildings
                            .map(|b| b.iter().map(|b| b.parse().unwrap()).collect()),
                    },
                )
            })
            .collect(),
        global,
    };
    gaesup_relay::token::mint(DEV_SECRET.as_bytes(), &claims)
}

pub fn now_s() -> u64 {
    gaesup_relay::hub::now_ms() / 1000
}

/// Read-write on apartment `main` and the global keys.
pub fn main_rw() -> String {
    token(&[("main", Access::Rw, None)], Some(Access::Rw))
}

/// A device's replica: makes ops the way a tab does.
pub struct Device {
    pub store: Replica,
    keys: Vec<Arc<KeySpec>>,
}

impl Device {
    pub fn new(tab: u64) -> Self {
        Self::on(Replica::new(TabId::new(tab), gaesup_relay::hub::now_ms))
    }

    /// A device whose clock is `clock` (a device that was away).
    pub fn with_clock(tab: u64, clock: ManualClock) -> Self {
        Self::on(Replica::new(TabId::new(tab), clock))
    }

    fn on(store: Replica) -> Self {
        Self::on_without(store, None)
    }

    /// A device whose page has not declared the key `missing` (its unit
    /// is not shown there).
    pub fn without(tab: u64, missing: &str) -> Self {
        Self::on_without(
            Replica::new(TabId::new(tab), gaesup_relay::hub::now_ms),
            Some(missing),
        )
    }

    fn on_without(mut store: Replica, missing: Option<&str>) -> Self {
        let keys = gaesup_keys::declarations().unwrap();
        for spec in &keys {
            if Some(spec.name().as_str()) != missing {
                store.declare(&SharedKey::erased(Arc::clone(spec))).unwrap();
            }
        }
        Self { store, keys }
    }

    pub fn key(&self, name: &str) -> SharedKey<Value> {
        let spec = self
            .keys
            .iter()
            .find(|k| k.name().as_str() == name)
            .unwrap_or_else(|| panic!("no key {name}"));
        SharedKey::erased(Arc::clone(spec))
    }

    /// An increment of the lobby's counter (`building/main/lobby/count`).
    pub fn count(&mut self, delta: i64) -> Op {
        let key = self.key("count");
        self.store.increment(&lobby(), &key, delta).unwrap().op
    }

    /// A reset of the lobby's counter to `target`.
    pub fn reset(&mut self, target: i64) -> Op {
        let key = self.key("count");
        self.store
            .set(&lobby(), &key, Value::from(target))
            .unwrap()
            .op
    }

    /// A reset of the lobby's counter to `target` whose fold horizon is
    /// replaced by `horizon` (a forgery: the core's own is its floor).
    pub fn reset_with_horizon(&mut self, target: i64, horizon: u64) -> Op {
        let mut op = self.reset(target);
        if let gaesup_state_core::Payload::Reset {
            horizon: forged, ..
        } = &mut op.payload
        {
            *forged = horizon;
        }
        op
    }

    /// A write of the shared note (`apartment/main/shared-note`).
    pub fn note(&mut self, text: &str) -> Op {
        let key = self.key("shared-note");
        self.store
            .set(&lobby(), &key, Value::from(text))
            .unwrap()
            .op
    }

    /// A write of the cart (`apartment/main/cart`, a merge key): only the
    /// lines that differ from what this device holds go out.
    pub fn cart(&mut self, lines: Value) -> Op {
        let key = self.key("cart");
        self.store.set(&lobby(), &key, lines).unwrap().op
    }

    /// A write of the global theme.
    pub fn theme(&mut self, theme: &str) -> Op {
        let key = self.key("theme");
        self.store
            .set(&lobby(), &key, Value::from(theme))
            .unwrap()
            .op
    }
}

pub fn lobby() -> UnitAddress {
    "main/lobby/counter".parse().unwrap()
}

/// A manual clock at now, for tests that need one.
pub fn clock() -> ManualClock {
    ManualClock::new(gaesup_relay::hub::now_ms())
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that keeps what it receives.
pub struct Client {
    socket: Socket,
    pub inbox: VecDeque<ServerMessage>,
    pub closed: Option<(u16, String)>,
}

pub fn main_stream() -> StreamId {
    "apartment:main".parse().unwrap()
}

impl Client {
    /// Connects without saying hello.
    pub async fn raw(relay: &Relay) -> Self {
        let (socket, _) = connect_async(relay.ws_url()).await.unwrap();
        Self {
            socket,
            inbox: VecDeque::new(),
            closed: None,
        }
    }

    /// Connects, says hello with `token`, following `main` from `cursor`.
    pub async fn connect(relay: &Relay, token: &str, cursor: Option<u64>) -> Self {
        Self::hello(
            relay,
            token,
            vec![Subscription {
                stream: main_stream(),
                cursor,
                after: None,
            }],
        )
        .await
    }

    /// Connects and says hello following nothing (a writer only).
    pub async fn writer(relay: &Relay, token: &str) -> Self {
        Self::hello(relay, token, Vec::new()).await
    }

    async fn hello(relay: &Relay, token: &str, subscribe: Vec<Subscription>) -> Self {
        let mut client = Self::raw(relay).await;
        client
            .send(&ClientMessage::Hello(Hello {
                client: "test-device".into(),
                token: Some(token.to_owned()),
                subscribe,
            }))
            .await;
        client
            .wait_for(|m| matches!(m, ServerMessage::Welcome(_)))
            .await;
        client
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        self.send_text(message.encode().unwrap()).await;
    }

    /// Sends `message`; `false` if the relay closed the socket.
    pub async fn try_send(&mut self, message: &ClientMessage) -> bool {
        self.socket
            .send(Message::text(message.encode().unwrap()))
            .await
            .is_ok()
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next message (or `None` once the socket closed).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        if let Some(message) = self.inbox.pop_front() {
            return Some(message);
        }
        self.read().await
    }

    async fn read(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("the relay answers in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message = ServerMessage::decode(text.as_str()).unwrap();
                    if let ServerMessage::Ping(ping) = &message {
                        let pong = ClientMessage::Pong(Ping { at: ping.at });
                        let _ = self
                            .socket
                            .send(Message::text(pong.encode().unwrap()))
                            .await;
                        continue;
                    }
                    return Some(message);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return None;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next message without answering pings (a silent device).
    pub async fn read_silently(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("the relay acts in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(ServerMessage::decode(text.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return None;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Sends a WebSocket ping (a control frame, no message) every `every`
    /// until the relay closes the socket, keeping the messages it sends;
    /// the close code and reason.
    pub async fn ping_until_closed(&mut self, every: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    assert!(Instant::now() < deadline, "the relay did not close the socket in time");
                    // Fails once the relay closed: the close frame follows.
                    let _ = self.socket.send(Message::Ping(Default::default())).await;
                }
                frame = self.socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        self.inbox.push_back(ServerMessage::decode(text.as_str()).unwrap());
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        return self.closed.clone();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return self.closed.clone(),
                },
            }
        }
    }

    /// Reads until a message matches (keeping the others in order).
    pub async fn wait_for(&mut self, wanted: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        if let Some(i) = self.inbox.iter().position(&wanted) {
            return self.inbox.remove(i).unwrap();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "nothing matched in time");
            match self.read().await {
                Some(message) if wanted(&message) => return message,
                Some(message) => self.inbox.push_back(message),
                None => panic!("the socket closed: {:?}", self.closed),
            }
        }
    }

    /// Reads ops (keeping other messages) until op `through` came, each
    /// from 1 exactly once and in order: a gap or a repeat fails.
    pub async fn ops_in_order(&mut self, through: u64) {
        let mut seen = 0;
        while seen < through {
            let ServerMessage::Ops(body) =
                self.wait_for(|m| matches!(m, ServerMessage::Ops(_))).await
            else {
                unreachable!("wait_for returns what matched");
            };
            for op in &body.ops {
                assert_eq!(op.seq, seen + 1, "a gap or a repeat");
                seen = op.seq;
            }
        }
    }

    /// Pushes and waits for the acks.
    pub async fn push(&mut self, ops: Vec<Op>) -> Vec<Ack> {
        self.send(&ClientMessage::Push(Push { ops })).await;
        match self.wait_for(|m| matches!(m, ServerMessage::Ack(_))).await {
            ServerMessage::Ack(acks) => acks.acks,
            _ => unreachable!(),
        }
    }

    /// The next error message's code.
    pub async fn error_code(&mut self) -> String {
        match self
            .wait_for(|m| matches!(m, ServerMessage::Error(_)))
            .await
        {
            ServerMessage::Error(body) => body.code,
            _ => unreachable!(),
        }
    }

    /// Reads until the socket closes; the close code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        while self.read().await.is_some() {}
        self.closed.clone()
    }
}

/// 120 notes of 200 KiB pushed by `writer`: 24 MB of log, more than a
/// loopback socket's buffers take.
pub async fn write_a_large_log(writer: &mut Client, device: &mut Device) {
    let text = "x".repeat(200 << 10);
    for _ in 0..120 {
        writer.push(vec![device.note(&text)]).await;
    }
}

/// HTTP, or `None` when the relay cannot be reached at all.
pub async fn try_http(
    method: &'static str,
    url: String,
    token: Option<String>,
    body: Option<String>,
) -> Option<(u16, String)> {
    tokio::task::spawn_blocking(move || {
        let mut request = ureq::request(method, &url).timeout(DEADLINE * 2);
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body),
            None => request.call(),
        };
        match result {
            Ok(response) => Some((response.status(), response.into_string().unwrap())),
            Err(ureq::Error::Status(status, response)) => {
                Some((status, response.into_string().unwrap_or_default()))
            }
            Err(_) => None,
        }
    })
    .await
    .unwrap()
}

/// HTTP over a plain socket (blocking `ureq`, on a blocking thread).
pub async fn http(
    method: &'static str,
    url: String,
    token: Option<String>,
    body: Option<String>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut request = ureq::request(method, &url).timeout(DEADLINE * 2);
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body),
            None => request.call(),
        };
        match result {
            Ok(response) => (response.status(), response.into_string().unwrap()),
            Err(ureq::Error::Status(status, response)) => {
                (status, response.into_string().unwrap_or_default())
            }
            Err(err) => panic!("{err}"),
        }
    })
    .await
    .unwrap()
}

/// The canonical states of apartment `main` (`GET /v1/snapshot`).
pub async fn main_snapshot(relay: &Relay) -> Snapshot {
    let (_, body) = http(
        "GET",
        relay.url("/v1/snapshot?stream=apartment:main"),
        Some(main_rw()),
        None,
    )
    .await;
    let ServerMessage::Snapshot(snapshot) = ServerMessage::decode(&body).unwrap() else {
        panic!("{body}")
    };
    snapshot
}

/// What a pull of apartment `main` after `cursor` answers
/// (`GET /v1/pull`, without waiting).
pub async fn main_pull(relay: &Relay, cursor: u64) -> ServerMessage {
    let url = relay.url(&format!("/v1/pull?stream=apartment:main&cursor={cursor}"));
    let (status, body) = http("GET", url, Some(main_rw()), None).await;
    assert_eq!(status, 200, "{body}");
    ServerMessage::decode(&body).unwrap()
}

/// The value of counter or gauge `name` (unlabelled) in `relay`'s
/// `/metrics`.
pub async fn metric(relay: &Relay, name: &str) -> u64 {
    let (_, metrics) = http("GET", relay.url("/metrics"), None, None).await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Waits (up to [`DEADLINE`]) until `relay`'s metric `name` is at least
/// `n`.
pub async fn metric_reaches(relay: &Relay, name: &str, n: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = metric(relay, name).await;
        if now >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {now}, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The code of an error message's text.
pub fn error_code(text: &str) -> String {
    match ServerMessage::decode(text).unwrap() {
        ServerMessage::Error(body) => body.code,
        other => panic!("not an error: {other:?}"),
    }
}

/// An HTTP request written by hand on a plain socket: `head` (the request
/// line and headers), then `body` and nothing more, the connection left
/// open (a body that trickles, or never comes); the status and body of
/// the answer.
pub async fn raw_http(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    socket.write_all(body).await.unwrap();
    let answer = async {
        let mut read = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&read).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                });
                if length.is_some_and(|length| body.len() >= length) {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, body.to_owned());
                }
            }
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the relay closed without an answer: {text:?}");
            read.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, answer)
        .await
        .expect("the relay answers in time")
}

/// The bytes an op takes in the log: its text as stored.
pub fn stored_len(op: &Op) -> u64 {
    serde_json::to_string(op).unwrap().len() as u64
}

/// A stream's log as the relay keeps it, written out again here: after a
/// commit takes it past either bound by a quarter, the oldest ops go
/// while it holds more ops or bytes than kept, the newest always stays.
pub struct KeptLog {
    ops: u64,
    bytes: u64,
    first: u64,
    sizes: VecDeque<u64>,
}

impl KeptLog {
    pub fn new(ops: u64, bytes: u64) -> Self {
        Self {
            ops,
            bytes,
            first: 1,
            sizes: VecDeque::new(),
        }
    }

    /// Whether committing an op of `size` bytes would trim the log.
    pub fn would_trim(&self, size: u64) -> bool {
        let ops = self.sizes.len() as u64 + 1;
        let bytes = self.sizes.iter().sum::<u64>() + size;
        ops > self.ops + self.ops / 4 || bytes > self.bytes + self.bytes / 4
    }

    /// An op of `size` bytes committed alone (then the log trimmed).
    pub fn commit(&mut self, size: u64) {
        let trims = self.would_trim(size);
        self.sizes.push_back(size);
        while trims
            && self.sizes.len() > 1
            && (self.sizes.len() as u64 > self.ops || self.sizes.iter().sum::<u64>() > self.bytes)
        {
            self.sizes.pop_front();
            self.first += 1;
        }
    }

    /// The oldest number the log holds.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The newest.
    pub fn head(&self) -> u64 {
        self.first + self.sizes.len() as u64 - 1
    }
}

/// Checks that the log of apartment `main` holds `first` to `head`: a pull
/// from just before `first` gets exactly those ops, one from further back
/// a snapshot (the log no longer reaches it).
pub async fn main_log_holds(relay: &Relay, first: u64, head: u64) {
    // What a pull answered, short (the ops are large).
    let said = |message: &ServerMessage| match message {
        ServerMessage::Ops(body) => {
            let seqs: Vec<u64> = body.ops.iter().map(|op| op.seq).collect();
            format!("ops {seqs:?}")
        }
        ServerMessage::Snapshot(snapshot) => format!("a snapshot at {}", snapshot.seq),
        other => format!("{other:?}"),
    };
    if first > 1 {
        let behind = main_pull(relay, first - 2).await;
        assert_eq!(
            said(&behind),
            format!("a snapshot at {head}"),
            "op {} was trimmed",
            first - 1
        );
    }
    let within = main_pull(relay, first - 1).await;
    let kept: Vec<u64> = (first..=head).collect();
    assert_eq!(said(&within), format!("ops {kept:?}"), "the ops kept");
}

/// The `relay_log_ops` gauge of `/metrics` (counted at most every 10 s:
/// ask once per relay).
pub async fn log_ops(relay: &Relay) -> u64 {
    metric(relay, "relay_log_ops").await
}
