//! A `weir run` in a child process, reached through its admin API: what
//! the admin, swap and CLI tests share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Fixture, collect_stream, weir_bin};

/// `weir run` with stdin held open and stderr collected as it comes.
pub struct Running {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub err: Arc<Mutex<String>>,
}

impl Running {
    /// `weir run` of the fixture's pipeline with `args` and `env` (and no
    /// WEIR_ADMIN_TOKEN but what `env` sets); its stdout is dropped.
    pub fn start(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::spawn(f, args, env, Stdio::null())
    }

    /// The same, with stdout going to `stdout` (`Stdio::piped()` to read
    /// it from `child.stdout`).
    pub fn spawn(f: &Fixture, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Running {
        let mut child = Command::new(weir_bin())
            .arg("run")
            .arg(f.pipeline_path())
            .args(args)
            .env_remove("WEIR_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .env("WEIR_CACHE_DIR", crate::cache_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (err, _) = collect_stream(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Running { child, stdin, err }
    }

    /// Sends one record a value, each `{"key":"k","value":"VALUE"}`.
    pub fn send(&mut self, values: &[&str]) {
        let stdin = self.stdin.as_mut().unwrap();
        for v in values {
            writeln!(stdin, "{{\"key\":\"k\",\"value\":\"{v}\"}}").unwrap();
        }
        stdin.flush().unwrap();
    }

    /// The run file of this process, once it is written.
    pub fn run_file(&self, f: &Fixture) -> PathBuf {
        let path = f.path(&format!(".weir/pipeline.{}.run", self.child.id()));
        until("the run file", || path.is_file());
        path
    }

    /// The admin API's address, from the run file (served over plain
    /// HTTP).
    pub fn admin(&self, f: &Fixture) -> SocketAddr {
        let url = self.admin_url(f);
        let addr = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("{url}"));
        addr.parse().unwrap()
    }

    /// The admin URL the run file gives (`http://...` or `https://...`).
    pub fn admin_url(&self, f: &Fixture) -> String {
        let text = std::fs::read_to_string(self.run_file(f)).unwrap();
        let info: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(info["pid"], self.child.id());
        assert_eq!(info["pipeline"], "pipeline");
        info["admin"].as_str().unwrap().to_string()
    }

    /// Closes stdin and waits for the exit (at most a minute); its status
    /// and stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "weir run did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Give the reader the last bytes.
        std::thread::sleep(Duration::from_millis(100));
        let err = self.err.lock().unwrap().clone();
        (status, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` (at most a minute), checking every 50 ms.
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP request over a plain socket, as curl would send it: the
/// status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_with(addr, method, path, token, &[], b"")
}

/// The same with more header lines (`Name: value`) and a body (its
/// Content-Length is `body`'s unless `headers` gives one).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[&str],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for h in headers {
        head.push_str(&format!("{h}\r\n"));
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-length:"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// A token file `admin.token` in the fixture's folder with `mode`.
/// `weir swap` of `f`'s pipeline, step `step`, through the admin API
/// guarded by `token`, with `args` (a component, `--config`, rollback
/// options).
pub fn weir_swap(
    f: &Fixture,
    token: &std::path::Path,
    step: &str,
    args: &[&str],
) -> std::process::Output {
    let pipeline = f.pipeline_path();
    let mut all = vec![
        "swap",
        pipeline.to_str().unwrap(),
        "--step",
        step,
        "--admin-token-file",
        token.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    crate::weir(&all)
}

pub fn token_file(f: &Fixture, token: &str, mode: u32) -> PathBuf {
    let path = f.path("admin.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}
