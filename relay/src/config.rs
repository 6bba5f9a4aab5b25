//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gaesup_protocol::Limits;

use crate::retention::Retention;

/// The secret `--dev` uses. Public by construction: development only.
pub const DEV_SECRET: &str = "gaesup-development-secret-do-not-deploy";

/// The gaesup relay: carries state operations between devices.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve` (also accepted without the subcommand).
    #[command(flatten)]
    pub serve: Serve,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve devices (the default).
    Serve(Serve),
    /// Print a signed token granting access to apartments.
    MintToken(Mint),
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct Serve {
    /// Address to listen on (port 0: any free port; the chosen address is
    /// printed as the first line of output).
    #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Directory of the embedded store (created if missing; unused with
    /// `--redis`).
    #[arg(long, env = "RELAY_DATA", default_value = "relay-data")]
    pub data: PathBuf,
    /// Keep the log in Redis instead of the embedded store
    /// (`redis://host:port/db`): any number of relay nodes may share it.
    /// Run Redis with `appendonly yes` and `appendfsync always` for acks
    /// that mean durable (the relay warns at start otherwise).
    #[arg(long, env = "RELAY_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Fault injection for tests: hold what this node's reader brings from
    /// other nodes this long before applying it (a node that lags).
    #[arg(long, hide = true, default_value_t = 0)]
    pub follow_delay_ms: u64,
    /// Fault injection for tests: hold this node's claims of new tabs
    /// this long, between reading their owners and claiming them (another
    /// node's claim then comes first). Redis only.
    #[arg(long, hide = true, default_value_t = 0)]
    pub claim_delay_ms: u64,
    /// A socket that has not said a valid hello this long after it opened
    /// is closed: before one it has shown no token, and it would otherwise
    /// hold a connection slot for as long as it pings. (Hidden: tests set
    /// it short.)
    #[arg(long, hide = true, default_value_t = 5_000)]
    pub hello_within_ms: u64,
    /// A connection that has not sent a request's headers whole this
    /// long after it opened, or after its last answer was queued, is
    /// closed; a shutdown waits this long for busy connections (see
    /// `listen.rs`). (Hidden: tests set it short.)
    #[arg(long, hide = true, default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// An HTTP push whose body has not arrived whole this long after its
    /// token was checked is answered 408 and its body dropped. (Hidden:
    /// tests set it short.)
    #[arg(long, hide = true, default_value_t = 20_000)]
    pub body_within_ms: u64,
    /// File holding the secret tokens are signed with.
    #[arg(long, env = "RELAY_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Development mode: a public, built-in secret (never deploy this).
    #[arg(long, env = "RELAY_DEV")]
    pub dev: bool,
    /// This node's name (reported to devices and in logs).
    #[arg(long, env = "RELAY_NODE", default_value = "relay-1")]
    pub node: String,
    /// Largest WebSocket message or HTTP body, in bytes.
    #[arg(long, env = "RELAY_MAX_FRAME_BYTES", default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    /// Most ops in one push.
    #[arg(long, env = "RELAY_MAX_OPS_PER_PUSH", default_value_t = 512)]
    pub max_ops_per_push: usize,
    /// Most ops per second per token subject on this node, shared by all
    /// its WebSocket connections and HTTP pushes. An
    /// op the core applies or tries counts once more per 16 KiB of its
    /// key's state (the work it costs grows with it), at most a second's
    /// worth.
    #[arg(long, env = "RELAY_MAX_OPS_PER_SECOND", default_value_t = 2000)]
    pub max_ops_per_second: u32,
    /// Most reads per second per token subject on this node, shared by all
    /// its WebSocket connections and HTTP requests: each HTTP pull (a long
    /// poll counts once, however long it waits), snapshot, WebSocket hello
    /// and (with a shared store) WebSocket ping counts one. Past it a read
    /// is refused as `rate_limited` (HTTP 429; on a socket an error
    /// message, and a hello's socket is closed); bursts of two seconds'
    /// worth.
    #[arg(long, env = "RELAY_MAX_READS_PER_SECOND", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_reads_per_second: u32,
    /// Most connections this node holds open: WebSockets (from their
    /// upgrade), and HTTP long polls while they wait. Past it a socket is
    /// refused, and so is a long poll about to wait, as
    /// `too_many_connections` (HTTP 503). `/metrics` counts them as
    /// `relay_connections` and `relay_polls_held`.
    #[arg(long, env = "RELAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u64,
    /// Most of those connections one token subject holds on this node:
    /// its sockets (from their hello, when the token is known) and its
    /// waiting long polls. Past it the hello is refused (an error message,
    /// and the socket closed), and a long poll about to wait refused (HTTP
    /// 503), both as `too_many_connections`, so that one token cannot fill
    /// the node and shut every other subject out. Half of
    /// `--max-connections` if not given: a deployment whose visitors all
    /// share one token (a public site's, or tokens minted without
    /// `--subject`) gets half of each node unless it sets this to
    /// `--max-connections`; one with a subject per person can set it far
    /// lower.
    #[arg(long, env = "RELAY_MAX_CONNECTIONS_PER_SUBJECT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_subject: Option<u64>,
    /// Most of those connections that may be sockets which have not said
    /// a valid hello yet (and so shown no token): past it the oldest of
    /// them is told `too_many_connections` and closed to make room, so
    /// that peers without a token can neither fill the node with sockets
    /// that never say hello (each held until its hello is due, 5 s, and
    /// up to a second more to take its close) nor keep out a device,
    /// which says hello a round trip after its socket opens, unless they
    /// open this many sockets within that round trip. A tenth of
    /// `--max-connections`, but at least 64 and at most all of them, if
    /// not given; keep it above the sockets that open within a round trip
    /// at the busiest (every device coming back after a restart), or some
    /// are closed and try again.
    #[arg(long, env = "RELAY_MAX_PENDING_HELLOS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending_hellos: Option<u64>,
    /// Messages queued for one device before it counts as too slow and is
    /// disconnected (it then resyncs from its cursor).
    #[arg(long, env = "RELAY_SEND_QUEUE", default_value_t = 256)]
    pub send_queue: usize,
    /// Bytes queued for one device before it counts as too slow, as with
    /// `--send-queue` (a message can be as large as a frame: the count
    /// alone would let one device that never reads hold hundreds of MiB).
    /// One message larger than this still goes, alone.
    #[arg(long, env = "RELAY_SEND_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub send_queue_bytes: usize,
    /// Heartbeat interval in ms; a socket silent for three of them is dead.
    #[arg(long, env = "RELAY_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Ops kept per stream before the log is trimmed (devices further
    /// behind get a snapshot).
    #[arg(long, env = "RELAY_LOG_KEEP", default_value_t = 10_000)]
    pub log_keep: u64,
    /// Bytes of ops (their stored text) kept per stream before the log is
    /// trimmed, as with `--log-keep`: whichever bound is met first, the
    /// newest op always kept. An op can be as large as a frame, so the
    /// count alone would let a peer holding a write token keep gigabytes
    /// per stream.
    #[arg(long, env = "RELAY_LOG_KEEP_BYTES", default_value_t = 64 << 20)]
    pub log_keep_bytes: u64,
    /// Longest long poll, in ms.
    #[arg(long, env = "RELAY_MAX_WAIT_MS", default_value_t = 25_000)]
    pub max_wait_ms: u64,
}

/// The subject of a token minted without `--subject`: every such token
/// shares it, and with it the tabs its devices write under.
pub const SHARED_SUBJECT: &str = "device";

/// Options of `mint-token`.
#[derive(Debug, Args)]
pub struct Mint {
    /// File holding the secret (or set `--dev` for the development one).
    #[arg(long, env = "RELAY_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Sign with the development secret.
    #[arg(long)]
    pub dev: bool,
    /// Who the token is for: a person, or an account whose devices trust
    /// each other. A tab's op ids belong to the subject whose token pushed
    /// its first op, so give each its own subject (without one, every token
    /// shares `device`), and keep it when a token is renewed (a device's
    /// unsent ops pushed under another subject are refused as `tab_taken`).
    #[arg(long, default_value = SHARED_SUBJECT)]
    pub subject: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// A grant: `<apartment>=r` or `<apartment>=rw`, optionally narrowed to
    /// buildings: `<apartment>=rw:<building>,<building>`. Repeatable.
    #[arg(long = "apartment", value_name = "GRANT")]
    pub apartments: Vec<String>,
    /// Access to global keys: `r` or `rw`.
    #[arg(long)]
    pub global: Option<String>,
}

impl Serve {
    /// How many of this node's sockets may not have said hello yet
    /// (`--max-pending-hellos`, or a tenth of the node's connections but
    /// at least 64 of them: a page opens a socket per apartment at once).
    pub fn pending_share(&self) -> u64 {
        self.max_pending_hellos
            .unwrap_or(
                (self.max_connections / 10)
                    .max(64)
                    .min(self.max_connections),
            )
            .max(1)
    }

    /// How many of this node's connections one token subject may hold
    /// (`--max-connections-per-subject`, or half the node's).
    pub fn subject_share(&self) -> u64 {
        self.max_connections_per_subject
            .unwrap_or(self.max_connections / 2)
            .max(1)
    }

    /// How much of each stream's log is kept (at least one op, one byte).
    pub fn retention(&self) -> Retention {
        Retention {
            ops: self.log_keep.max(1),
            bytes: self.log_keep_bytes.max(1),
        }
    }

    /// What devices are told the relay accepts.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_ops_per_push: self.max_ops_per_push,
            max_ops_per_second: self.max_ops_per_second,
        }
    }
}

/// The signing secret: from `--secret-file`, or the development one with
/// `--dev`.
pub fn secret(file: Option<&PathBuf>, dev: bool) -> Result<Vec<u8>, String> {
    match (file, dev) {
        (Some(path), _) => {
            let secret = std::fs::read(path)
                .map_err(|err| format!("cannot read the secret file {}: {err}", path.display()))?;
            let secret: Vec<u8> = secret
                .into_iter()
                .rev()
                .skip_while(u8::is_ascii_whitespace)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if secret.len() < 16 {
                return Err(format!(
                    "the secret in {} is shorter than 16 bytes",
                    path.display()
                ));
            }
            Ok(secret)
        }
        (None, true) => Ok(DEV_SECRET.as_bytes().to_vec()),
        (None, false) => Err(String::from(
            "no secret: pass --secret-file <file> (or --dev for a development relay)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::{CommandFactory, FromArgMatches};

    /// `args` parsed as the relay's command line, its environment
    /// variables ignored (a `RELAY_…` exported where the tests run would
    /// change the defaults).
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
        let matches =
            command.try_get_matches_from(std::iter::once("relay").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&matches)
    }

    fn serve(args: &[&str]) -> Serve {
        parse(args)
            .map(|cli| cli.serve)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// A subject's share of a node is half the node's unless set: a
    /// deployment whose visitors share one token keeps half of each node
    /// without setting anything.
    #[test]
    fn a_subjects_share_of_a_node_is_half_of_it_unless_set() {
        assert_eq!(serve(&[]).subject_share(), 5_000);
        assert_eq!(serve(&["--max-connections", "3"]).subject_share(), 1);
        assert_eq!(serve(&["--max-connections", "1"]).subject_share(), 1);
        let set = [
            "--max-connections",
            "100",
            "--max-connections-per-subject",
            "100",
        ];
        assert_eq!(serve(&set).subject_share(), 100);
        let zero = ["--max-connections-per-subject", "0"];
        assert!(parse(&zero).is_err());
    }

    /// Sockets before their hello may take a tenth of the node, but at
    /// least 64 (a page opens several at once), and never more than the
    /// node holds.
    #[test]
    fn sockets_before_hello_take_a_tenth_of_the_node_unless_set() {
        assert_eq!(serve(&[]).pending_share(), 1_000);
        assert_eq!(serve(&["--max-connections", "100"]).pending_share(), 64);
        assert_eq!(serve(&["--max-connections", "3"]).pending_share(), 3);
        let set = ["--max-pending-hellos", "2"];
        assert_eq!(serve(&set).pending_share(), 2);
    }
}
