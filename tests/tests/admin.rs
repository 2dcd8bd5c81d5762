//! The admin API of a running `weir run` (issue 12, items 1 and 2): served
//! on loopback, or anywhere over TLS, found through the run file, `weir
//! status`, and the bearer token that guards every changing call (here
//! `POST /v1/stop`).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use weir_tests::admin::{Running, http, token_file, until};
use weir_tests::{Fixture, assert_contains, stderr, stdout, weir};

/// An endless pipeline: stdin through a pass-through filter to a file,
/// one record per batch so counters move with every line.
fn fixture() -> Fixture {
    Fixture::new(
        "
partitions: 1
batch-size: 1
sources:
  in: { kind: stdin, value-format: string }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: file, path: out.jsonl, value-format: string }
",
        &[],
    )
}

/// `weir status` on the pipeline file, with the token file when given.
fn status(f: &Fixture, token: Option<&PathBuf>) -> std::process::Output {
    let mut args = vec![
        "status".to_string(),
        f.pipeline_path().display().to_string(),
    ];
    if let Some(t) = token {
        args.extend(["--admin-token-file".to_string(), t.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    weir(&args)
}

/// The `IN` figure of step `pass` in `weir status`'s table.
fn pass_in(table: &str) -> u64 {
    let row = table
        .lines()
        .find(|l| l.starts_with("pass "))
        .unwrap_or_else(|| panic!("no row for step `pass`:\n{table}"));
    row.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn status_shows_the_steps_and_rising_counters_and_stop_needs_the_token() {
    let f = fixture();
    let token = token_file(&f, "s3cret-token", 0o600);
    // A run file left by a process that is gone: ignored and removed.
    std::fs::create_dir_all(f.path(".weir")).unwrap();
    let stale = f.path(".weir/pipeline.4194305.run");
    std::fs::write(
        &stale,
        r#"{"pipeline":"pipeline","pid":4194305,"admin":"127.0.0.1:1"}"#,
    )
    .unwrap();

    let mut run = Running::start(&f, &["--admin-token-file", token.to_str().unwrap()], &[]);
    let addr = run.admin(&f);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert!(!stale.exists(), "the stale run file is still there");
    let mode = std::fs::metadata(run.run_file(&f))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the run file is not owner-only");

    // `weir status` prints the step, its kind, digest and counters, rising.
    let digest = stdout(&weir(&[
        "plugin",
        "inspect",
        weir_tests::plugin("noop").to_str().unwrap(),
    ]))
    .lines()
    .find_map(|l| l.strip_prefix("sha256:").map(|d| d.trim().to_string()))
    .unwrap();
    run.send(&["a", "b", "c"]);
    let mut table = String::new();
    until("3 records counted", || {
        let out = status(&f, Some(&token));
        assert!(out.status.success(), "{}", stderr(&out));
        table = stdout(&out);
        pass_in(&table) == 3
    });
    assert_contains(&table, "pipeline `pipeline` (pid ");
    assert_contains(&table, "STEP  KIND    TASKS  IN  OUT  ERRORS  SHA256");
    let row = table.lines().find(|l| l.starts_with("pass ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "filter", "{table}");
    assert_eq!(cells[4], "3", "records out: {table}");
    assert_eq!(cells[5], "0", "errors: {table}");
    assert_eq!(cells[6], &digest[..12], "{table}");
    assert!(cells[7].ends_with("noop.wasm"), "{table}");
    run.send(&["d", "e"]);
    until("5 records counted", || {
        pass_in(&stdout(&status(&f, Some(&token)))) == 5
    });
    // The JSON has the whole digest.
    let (code, body) = http(addr, "GET", "/v1/status", Some("s3cret-token"));
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["steps"][0]["sha256"], digest.as_str());
    assert_eq!(json["records_in"], 5);

    // With a token configured, reading needs it too.
    let out = status(&f, None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "answered 401: this call needs the admin token",
    );
    let (code, _) = http(addr, "GET", "/v1/status", Some("wrong"));
    assert_eq!(code, 401);

    // Stopping: refused without the token and with a wrong one.
    let (code, body) = http(addr, "POST", "/v1/stop", None);
    assert_eq!(code, 401, "{body}");
    assert_contains(&body, "needs the admin token");
    let (code, body) = http(addr, "POST", "/v1/stop", Some("s3cret-tokeN"));
    assert_eq!(code, 401, "{body}");
    assert_contains(&body, "wrong admin token");
    assert!(run.child.try_wait().unwrap().is_none(), "the run stopped");
    // The right token stops the run as SIGTERM does, with its summary.
    let (code, body) = http(addr, "POST", "/v1/stop", Some("s3cret-token"));
    assert_eq!(code, 202, "{body}");
    let run_file = run.run_file(&f);
    let (status_code, err) = run.wait();
    assert_eq!(status_code.code(), Some(143), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("weir: interrupted by POST /v1/stop after ")
            && last.contains("5 records in, 5 out"),
        "{err}"
    );
    assert!(!run_file.exists(), "the run file outlived the run");
    // Nothing runs now.
    let out = status(&f, Some(&token));
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &stderr(&out),
        "is not running (no run file of a live process in",
    );
}

#[test]
fn with_no_token_configured_changes_are_refused_and_reading_is_open() {
    let f = fixture();
    let mut run = Running::start(&f, &[], &[]);
    let addr = run.admin(&f);
    run.send(&["a"]);
    let (code, body) = http(addr, "POST", "/v1/stop", None);
    assert_eq!(code, 403, "{body}");
    assert_contains(&body, "no admin token is configured");
    assert_contains(&body, "--admin-token-file");
    let (code, body) = http(addr, "POST", "/v1/stop", Some("anything"));
    assert_eq!(code, 403, "{body}");
    let out = status(&f, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stdout(&out), "pass ");
    // The address works as well as the pipeline file.
    let out = weir(&["status", &addr.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The end of the input ends the run as ever, and the run file goes.
    let run_file = run.run_file(&f);
    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(0), "{err}");
    assert!(!run_file.exists());
}

#[test]
fn the_token_from_the_environment_guards_the_api() {
    let f = fixture();
    let run = Running::start(&f, &[], &[("WEIR_ADMIN_TOKEN", "from-env")]);
    let addr = run.admin(&f);
    assert_eq!(http(addr, "POST", "/v1/stop", Some("other")).0, 401);
    assert_eq!(http(addr, "POST", "/v1/stop", Some("from-env")).0, 202);
    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(143), "{err}");
}

#[test]
fn an_exposed_token_file_and_a_non_loopback_address_are_refused_at_start() {
    let f = fixture();
    let token = token_file(&f, "s3cret", 0o644);
    let pipeline = f.pipeline_path();
    let out = weir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("admin token file {} has mode 0644", token.display()),
    );
    for addr in ["0.0.0.0:0", "192.0.2.1:7070"] {
        let out = weir(&["run", pipeline.to_str().unwrap(), "--admin", addr]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_contains(
            &stderr(&out),
            &format!("admin address {addr} is not a loopback address"),
        );
        assert_contains(
            &stderr(&out),
            "give --admin-tls-cert FILE and --admin-tls-key FILE (PEM) to serve it over HTTPS",
        );
    }
    assert!(!f.path(".weir").exists(), "a refused run wrote a run file");
}

#[test]
fn admin_off_serves_nothing_and_writes_no_run_file() {
    let f = fixture();
    let mut run = Running::start(&f, &["--admin", "off"], &[]);
    run.send(&["a"]);
    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(0), "{err}");
    assert!(!f.path(".weir").exists());
    // An address where nothing answers.
    let out = weir(&["status", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_contains(
        &err,
        "error: cannot reach the admin API at http://127.0.0.1:1: ",
    );
    assert_eq!(err.matches("refused").count(), 1, "{err}");
}

#[test]
fn a_run_file_that_cannot_be_written_leaves_the_run_going_with_a_warning() {
    let f = fixture();
    // `.weir` taken by a file: no run file can go there (even for root).
    std::fs::write(f.path(".weir"), "").unwrap();
    let mut run = Running::start(&f, &[], &[]);
    run.send(&["a", "b"]);
    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(0), "{err}");
    assert_contains(&err, "cannot write the run file");
    assert_contains(
        &err,
        "finds this run only by its address, http://127.0.0.1:",
    );
    assert_contains(&err, "2 records in, 2 out");
}

/// A self-signed certificate for `127.0.0.1` and `localhost` in
/// `NAME.crt`, and its key in `NAME.key` (owner-only).
fn certificate(f: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (
        f.path(&format!("{name}.crt")),
        f.path(&format!("{name}.key")),
    );
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// `weir status TARGET` with `args` after it.
fn status_of(target: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["status", target];
    all.extend_from_slice(args);
    weir(&all)
}

#[test]
fn over_tls_the_api_may_listen_anywhere_and_the_cli_checks_its_certificate() {
    let f = fixture();
    let (cert, key) = certificate(&f, "server");
    let (other, _) = certificate(&f, "other");
    let token = token_file(&f, "tls-token", 0o600);
    let (cert_s, key_s, token_s) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        token.to_str().unwrap(),
    );
    let mut run = Running::start(
        &f,
        &[
            "--admin",
            "0.0.0.0:0",
            "--admin-tls-cert",
            cert_s,
            "--admin-tls-key",
            key_s,
            "--admin-token-file",
            token_s,
        ],
        &[],
    );
    // The run file gives the scheme, and loopback for 0.0.0.0.
    let url = run.admin_url(&f);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let pipeline = f.pipeline_path();
    let pipeline = pipeline.to_str().unwrap();
    run.send(&["a", "b"]);
    let with_ca = ["--admin-ca", cert_s, "--admin-token-file", token_s];
    // From the run file, and from the address.
    until("2 records counted over HTTPS", || {
        let out = status_of(pipeline, &with_ca);
        assert!(out.status.success(), "{}", stderr(&out));
        pass_in(&stdout(&out)) == 2
    });
    let out = status_of(&url, &with_ca);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pass_in(&stdout(&out)), 2);

    // Another certificate as the CA, or none (Mozilla's roots): refused,
    // saying what was trusted and what to do.
    let out = status_of(
        &url,
        &[
            "--admin-ca",
            other.to_str().unwrap(),
            "--admin-token-file",
            token_s,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!(
            "the admin API at {url} presented a certificate that --admin-ca {} does not vouch for",
            other.display()
        ),
    );
    assert_contains(&stderr(&out), "(invalid peer certificate: ");
    let out = status_of(pipeline, &["--admin-token-file", token_s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "that the built-in Mozilla roots (no --admin-ca given) does not vouch for",
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = url.replace("https://", "http://");
    let out = status_of(&plain, &with_ca[2..]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("cannot reach the admin API at {plain}: "),
    );

    // The token rules hold over TLS.
    let out = status_of(&url, &with_ca[..2]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "answered 401: this call needs the admin token",
    );
    let url: weir::admin::AdminUrl = url.parse().unwrap();
    let tls = weir::admin::ClientTls::load(Some(&cert)).unwrap();
    let stop = |token: Option<&str>| {
        let token = token.map(|t| weir::admin::Token::new(t, "the test").unwrap());
        weir::admin::request(&url, &tls, "POST", "/v1/stop", token.as_ref(), None).unwrap()
    };
    let reply = stop(None);
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = stop(Some("tls-tokeN"));
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.error(), "wrong admin token");
    assert!(run.child.try_wait().unwrap().is_none(), "the run stopped");
    assert_eq!(stop(Some("tls-token")).status, 202);
    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(143), "{err}");
    assert_contains(&err, "2 records in, 2 out");
}

#[test]
fn tls_files_are_checked_at_start() {
    let f = fixture();
    let (cert, key) = certificate(&f, "server");
    let pipeline = f.pipeline_path();
    let run = |args: &[&str]| {
        let mut all = vec!["run", pipeline.to_str().unwrap(), "--admin", "0.0.0.0:0"];
        all.extend_from_slice(args);
        weir(&all)
    };
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // A key its group or others can read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["--admin-tls-cert", cert_s, "--admin-tls-key", key_s]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("admin TLS key file {key_s} has mode 0644"),
    );
    assert_contains(&stderr(&out), &format!("chmod 600 {key_s}"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // One without the other.
    let out = run(&["--admin-tls-cert", cert_s]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "--admin-tls-key <FILE>");
    // The files swapped.
    let out = run(&["--admin-tls-cert", key_s, "--admin-tls-key", key_s]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("TLS file {key_s}: it holds no certificate"),
    );
    let missing = f.path("missing.crt");
    let out = run(&[
        "--admin-tls-cert",
        missing.to_str().unwrap(),
        "--admin-tls-key",
        key_s,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("cannot read the TLS file {}", missing.display()),
    );
    assert!(!f.path(".weir").exists(), "a refused run wrote a run file");
}
