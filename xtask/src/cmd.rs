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
