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
pub fn free_ports<'a>(
    vars: &[&'a str],
    is_set: impl Fn(&str) -> bool,
) -> Result<Vec<(&'a str, u16)>, String> {
    let mut held = Vec::new();
    for var in vars.iter().filter(|var| !is_set(var)) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("no free loopback port for {var}: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("no free loopback port for {var}: {e}"))?
            .port();
        held.push((*var, port, listener));
    }
    Ok(held.into_iter().map(|(var, port, _)| (var, port)).collect())
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
        // Free once chosen: a server can bind each of them.
        for (_, port) in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}
