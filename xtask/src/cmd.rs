//! Running commands with clear errors.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::setup::ToolEnv;

/// The workspace root: the nearest directory at or above the current one
/// whose Cargo.toml declares `[workspace]` (cargo runs us from where the
/// command was typed). Found at run time rather than baked in at compile
/// time, so a checkout that shares a target directory with another one
/// never works on the other's files.
pub fn root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        })
}

/// A free loopback port for each of `vars` that `is_set` says the caller
/// did not set. The listeners are held until all are chosen, so no two
/// of them get the same port.
///
/// The ports come from below the kernel's ephemeral range, which it
/// draws on for every outgoing connection's own port and for every
/// `bind` to port 0: a port chosen there and let go until its server
/// binds it (or between a server killed and started again on it) could
/// be taken meanwhile by a connection of anything else running, and
/// the server would not start. Below the range, only a process that
/// names the port can take it.
pub fn free_ports<'a>(
    vars: &[&'a str],
    is_set: impl Fn(&str) -> bool,
) -> Result<Vec<(&'a str, u16)>, String> {
    let mut quiet = QuietPorts::new();
    let mut held = Vec::new();
    for var in vars.iter().filter(|var| !is_set(var)) {
        let listener = quiet
            .bind()
            .map_err(|e| format!("no free loopback port for {var}: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("no free loopback port for {var}: {e}"))?
            .port();
        held.push((*var, port, listener));
    }
    Ok(held.into_iter().map(|(var, port, _)| (var, port)).collect())
}

/// Where loopback ports are looked for: the ports from half the start of
/// the kernel's ephemeral range up to that start (16384 to 32767 with
/// Linux's default range, 32768 to 60999), from a place picked at random.
struct QuietPorts {
    band: Option<(u16, u16)>,
    next: u16,
}

impl QuietPorts {
    /// How many ports of the band are tried before giving up on it.
    const TRIES: u16 = 256;

    fn new() -> Self {
        let band = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| quiet_band(&text));
        let next = band.map_or(0, |(low, high)| {
            // A start that differs between processes, so that two suites
            // running at once do not both try the same ports first.
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            let span = u64::from(high - low) + 1;
            low + u16::try_from(hasher.finish() % span).unwrap_or(0)
        });
        Self { band, next }
    }

    /// A listener on a free port of the band, or on one the kernel picks
    /// where there is no band (not Linux) or nothing in it is free.
    fn bind(&mut self) -> std::io::Result<std::net::TcpListener> {
        if let Some((low, high)) = self.band {
            for _ in 0..Self::TRIES {
                let port = self.next;
                self.next = if port >= high { low } else { port + 1 };
                if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                    return Ok(listener);
                }
            }
        }
        std::net::TcpListener::bind(("127.0.0.1", 0))
    }
}

/// The band below an ephemeral range written as the kernel writes it
/// (`"32768\t60999\n"`), if there is room for one above the privileged
/// ports.
fn quiet_band(range: &str) -> Option<(u16, u16)> {
    let low: u16 = range.split_whitespace().next()?.parse().ok()?;
    let (start, end) = (low / 2, low.checked_sub(1)?);
    (start >= 1024 && start <= end).then_some((start, end))
}

/// A command to run from the workspace root (or a given directory).
pub struct Cmd {
    command: Command,
    shown: String,
}

impl Cmd {
    /// A command running `program` in the workspace root.
    pub fn new(program: &str) -> Self {
        let mut command = Command::new(program);
        command.current_dir(root());
        Self {
            command,
            shown: program.to_owned(),
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.shown.push(' ');
            self.shown.push_str(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    /// Runs in `dir` (relative to the workspace root).
    pub fn dir(mut self, dir: &str) -> Self {
        self.command.current_dir(root().join(dir));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets each of `vars` to a loopback port nobody listens on now, unless
    /// the caller's environment already names one: the static servers
    /// Playwright starts then never meet another checkout's suite, or a
    /// server an interrupted run left behind, on fixed ports.
    pub fn free_ports(mut self, vars: &[&str]) -> Result<Self, String> {
        for (var, port) in free_ports(vars, |var| std::env::var_os(var).is_some())? {
            self.command.env(var, port.to_string());
        }
        Ok(self)
    }

    /// Uses the PATH that has the project's tools first.
    pub fn env_path(mut self, env: &ToolEnv) -> Self {
        self.command.env("PATH", &env.path);
        self
    }

    /// Runs with inherited output; an error says which command failed.
    pub fn run(mut self) -> Result<(), String> {
        eprintln!("$ {}", self.shown);
        let status = self
            .command
            .status()
            .map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({status})", self.shown))
        }
    }

    /// Runs, echoing stdout line by line to our stdout and handing each line
    /// to `on_line` (used to count the test runners' summaries).
    pub fn run_watching(mut self, mut on_line: impl FnMut(&str)) -> Result<(), String> {
        eprintln!("$ {}", self.shown);
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                on_line(&line);
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("`{}` did not finish: {e}", self.shown))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({status})", self.shown))
        }
    }

    /// Runs with stdout inherited and returns what it wrote to stderr (for
    /// tools that report there, such as valgrind); an error says which
    /// command failed, with the end of its stderr.
    pub fn stderr_text(mut self) -> Result<String, String> {
        eprintln!("$ {}", self.shown);
        let output = self
            .command
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(text)
        } else {
            let lines: Vec<&str> = text.lines().collect();
            Err(format!(
                "`{}` failed ({}):\n{}",
                self.shown,
                output.status,
                lines[lines.len().saturating_sub(10)..].join("\n")
            ))
        }
    }

    /// Runs quietly and returns trimmed stdout, or `None` if the program is
    /// missing or fails (used to probe installed tools).
    pub fn probe(mut self) -> Option<String> {
        let output = self.command.stderr(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_skip_what_the_caller_set() {
        let vars = ["A", "B", "C", "D", "E", "F", "G", "H"];
        let ports = free_ports(&vars, |var| var == "C").expect("loopback ports");
        let named: Vec<&str> = ports.iter().map(|(var, _)| *var).collect();
        assert_eq!(named, ["A", "B", "D", "E", "F", "G", "H"]);
        let mut numbers: Vec<u16> = ports.iter().map(|(_, port)| *port).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 7, "{ports:?}");
        // Free once chosen: a server can bind each of them. On Linux they
        // lie below the ephemeral range, where no connection takes them.
        let band = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| quiet_band(&text));
        for (_, port) in ports {
            if let Some((low, high)) = band {
                assert!(
                    (low..=high).contains(&port),
                    "{port} outside {low}..={high}"
                );
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }

    #[test]
    fn the_quiet_band_lies_below_the_ephemeral_range_above_the_privileged_ports() {
        assert_eq!(quiet_band("32768\t60999\n"), Some((16384, 32767)));
        assert_eq!(quiet_band("49152 65535"), Some((24576, 49151)));
        // No room above the privileged ports, or nothing to read: none.
        assert_eq!(quiet_band("1500 65535"), None);
        assert_eq!(quiet_band("0 65535"), None);
        assert_eq!(quiet_band(""), None);
        assert_eq!(quiet_band("many"), None);
    }

    #[test]
    fn a_port_taken_in_the_band_is_skipped() {
        let mut quiet = QuietPorts {
            band: Some((0, 0)),
            next: 0,
        };
        let first = quiet.bind().expect("a port");
        let taken = first.local_addr().expect("an address").port();
        quiet.band = Some((taken, taken));
        quiet.next = taken;
        // The only port of the band is taken: one the kernel picks.
        let second = quiet.bind().expect("a port");
        assert_ne!(second.local_addr().expect("an address").port(), taken);
    }
}
