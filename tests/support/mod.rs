//! Test harness for sockets and processes: a temporary directory per test, the port-mapper and kernel programs as child
//! processes that are killed on drop (also when a test fails), and line
//! reading with a timeout so no test can hang.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use erlangen::config::Config;
use erlangen::port_mapper::server::{PortMapper, ServerConfig};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it holds, parking briefly between tries; panics
/// naming `what` if it does not hold within [`WAIT`]. For conditions no
/// event announces (a registration dropped by a port mapper, a process
/// gone): the wait ends as soon as the condition holds, never after a
/// fixed sleep.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        thread::park_timeout(Duration::from_millis(10));
    }
}

/// Waits until `agent`'s exit protocol is over: it has left the agent
/// table, the last step, after every peer was told.
pub fn gone(agent: &erlangen::Agent) {
    eventually("the agent's exit protocol ends", || {
        !erlangen::management::agents().contains(agent)
    });
}

/// A port mapper in this process on ports of the system's choosing, and
/// the configuration of a node that uses it, with its cookie file in a
/// fresh directory (returned too: it is removed when dropped).
pub fn port_mapper_in_process(tag: &str) -> (TempDir, PortMapper, Config) {
    let dir = TempDir::new(tag);
    let pm = PortMapper::start(ServerConfig {
        directory_host: "127.0.0.1".into(),
        registry_port: 0,
        directory_port: 0,
        log: false,
    })
    .expect("port mapper");
    let config = Config {
        registry_port: pm.registry_addr().port(),
        directory_port: pm.directory_addr().port(),
        cookie_file: dir.path("cookie"),
    };
    (dir, pm, config)
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("erlangen-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `cmd` with piped output, killed when dropped.
    pub fn from_command(cmd: Command, name: &str) -> Proc {
        Proc::spawn(cmd, name)
    }

    fn spawn(mut cmd: Command, name: &str) -> Proc {
        clean_env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        // stdout and stderr go into one channel, line by line, prefixed so
        // tests can tell them apart.
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(format!("stderr: {line}")).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Proc {
            child,
            name: name.to_owned(),
            lines: rx,
            stdin,
            seen: Vec::new(),
        }
    }

    /// Writes a line to the process's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Writes raw bytes to the process's stdin (input that is not text).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next output line (stdout, or stderr prefixed `stderr: `).
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(_) => panic!(
                "{}: no output within {WAIT:?}; so far:\n{}",
                self.name,
                self.seen.join("\n")
            ),
        }
    }

    /// The next output line if one is already there (after the process
    /// exited, all its output is).
    pub fn try_line(&mut self) -> Option<String> {
        let l = self.lines.try_recv().ok()?;
        self.seen.push(l.clone());
        Some(l)
    }

    /// Every line the process still has to give, once it has closed its
    /// output (both reader threads reached end of file), within [`WAIT`]:
    /// after it exited, this is all it wrote, however far behind the
    /// reader threads were.
    pub fn rest_of_output(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    rest.push(l);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: output not closed within {WAIT:?}; so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads lines until one satisfies `pred`; returns it.
    pub fn line_matching(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no matching line within {WAIT:?}; so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends a form and returns the next stdout line or error line.
    pub fn eval(&mut self, form: &str) -> String {
        self.send(form);
        self.line()
    }

    /// Kills the process with SIGKILL now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::park_timeout(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes from `cmd` every `ERLANGEN_*` variable of the environment the
/// tests run in (ports, cookie file, init file, `ERLANGEN_LOG`,
/// `ERLANGEN_WORKERS`, `ERLANGEN_MAX_THREADS`, …) that the test did not set
/// (or remove) on `cmd` itself: a child sees only what its test chose. Every
/// program a test starts goes through here ([`Proc`], [`run_bounded`]).
pub fn clean_env(cmd: &mut Command) {
    let chosen: Vec<std::ffi::OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for (key, _) in std::env::vars_os() {
        let ours = key.to_str().is_some_and(|k| k.starts_with("ERLANGEN_"));
        if ours && !chosen.contains(&key) {
            cmd.env_remove(&key);
        }
    }
}

/// A port mapper with a private cookie file.
///
/// No guessed free ports (a port found free and released can be taken by
/// anyone before the program binds it): the port mapper is started with
/// port 0 for both services, binds whatever the system gives it, and says
/// which in its startup line, which is read back here. Restarts reuse
/// those ports, as a real restart would.
pub struct Cluster {
    pub dir: TempDir,
    /// The registry's port, known once the port mapper has started.
    pub registry_port: u16,
    /// The directory's port, known once the port mapper has started.
    pub directory_port: u16,
    /// The address the directory listens on (`localhost` resolved).
    directory_ip: IpAddr,
    pub port_mapper: Option<Proc>,
}

impl Cluster {
    pub fn new(tag: &str) -> Cluster {
        let dir = TempDir::new(tag);
        let mut c = Cluster {
            dir,
            registry_port: 0,
            directory_port: 0,
            directory_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_mapper: None,
        };
        c.start_port_mapper();
        c
    }

    pub fn cookie_file(&self) -> PathBuf {
        self.dir.path("cookie")
    }

    pub fn directory(&self) -> SocketAddr {
        SocketAddr::new(self.directory_ip, self.directory_port)
    }

    pub fn registry(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.registry_port))
    }

    /// Starts the port mapper: on ports of the system's choosing the first
    /// time, on the same ports again after [`Cluster::stop_port_mapper`].
    pub fn start_port_mapper(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-port-mapper"));
        cmd.arg("localhost")
            .arg("--registry-port")
            .arg(self.registry_port.to_string())
            .arg("--directory-port")
            .arg(self.directory_port.to_string());
        let mut p = Proc::spawn(cmd, "port mapper");
        // The first line on stderr says where it serves, or why it could
        // not start.
        let line = p.line_matching(|l| l.starts_with("stderr: erlangen-port-mapper:"));
        let (registry, directory) =
            listening_addrs(&line).unwrap_or_else(|| panic!("port mapper did not start: {line}"));
        assert!(
            self.registry_port == 0
                || (registry.port(), directory.port()) == (self.registry_port, self.directory_port),
            "restarted port mapper moved: {line}"
        );
        self.registry_port = registry.port();
        self.directory_port = directory.port();
        self.directory_ip = directory.ip();
        self.port_mapper = Some(p);
    }

    pub fn stop_port_mapper(&mut self) {
        if let Some(mut p) = self.port_mapper.take() {
            p.kill();
        }
    }

    /// A kernel in batch mode with this cluster's ports and cookie, plus
    /// `args`.
    pub fn kernel(&self, name: &str, args: &[&str]) -> Proc {
        self.kernel_with_env(name, args, &[])
    }

    /// [`Cluster::kernel`] with extra environment variables.
    pub fn kernel_with_env(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
        cmd.arg("-n")
            .arg("-b")
            .arg("--registry-port")
            .arg(self.registry_port.to_string())
            .arg("--directory-port")
            .arg(self.directory_port.to_string())
            .arg("--cookie-file")
            .arg(self.cookie_file())
            .args(args)
            .envs(env.iter().copied());
        Proc::spawn(cmd, name)
    }

    /// A kernel serving as node `node` on localhost (started with
    /// `-e '(node …)'`), once it is registered.
    pub fn node(&self, node: &str) -> Proc {
        let form = format!("(node :host \"localhost\" :name \"{node}\")");
        let p = self.kernel(node, &["-e", &form]);
        self.wait_registered(node);
        p
    }

    /// Waits until the port mapper knows `node`.
    pub fn wait_registered(&self, node: &str) {
        eventually(&format!("registration of node {node}"), || {
            erlangen::port_mapper::client::query_port(
                self.directory(),
                node,
                Duration::from_secs(2),
            )
            .is_ok()
        });
    }

    /// Waits until the port mapper no longer knows `node`.
    pub fn wait_unregistered(&self, node: &str) {
        eventually(&format!("release of node {node}"), || {
            matches!(
                erlangen::port_mapper::client::query_port(
                    self.directory(),
                    node,
                    Duration::from_secs(2),
                ),
                Err(erlangen::port_mapper::PortMapperError::UnknownNode(_))
            )
        });
    }

    /// A kernel that is itself a node named `name` (so it can reach
    /// others), ready for forms.
    pub fn client(&self, name: &str) -> Proc {
        let mut k = self.kernel(name, &[]);
        let out = k.eval(&format!(
            "(spawn '(node :host \"localhost\" :name \"{name}\"))"
        ));
        assert!(out.starts_with("#<AGENT"), "node start: {out}");
        k
    }
}

impl Cluster {
    /// [`Cluster::client`] with more keywords for `(node …)`, such as
    /// `:tick 1 :timeout 10` (the failure detector's settings).
    pub fn client_with(&self, name: &str, node_options: &str) -> Proc {
        let mut k = self.kernel(name, &[]);
        let out = k.eval(&format!(
            "(spawn '(node :host \"localhost\" :name \"{name}\" {node_options}))"
        ));
        assert!(out.starts_with("#<AGENT"), "node start: {out}");
        k
    }
}

/// Sends signal `sig` (`"STOP"`, `"CONT"`, …) to `process`.
pub fn signal(process: &Proc, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(process.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {}", process.pid());
}

/// Evaluates `form` in `k`, which must print `expected`.
pub fn expect(k: &mut Proc, form: &str, expected: &str) {
    let out = k.eval(form);
    assert_eq!(out, expected, "{form}");
}

/// Evaluates `form` in `k` until it prints `expected`, within [`WAIT`]:
/// for state that other nodes change (group members, global names).
pub fn eval_until(k: &mut Proc, form: &str, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = k.eval(form);
        if last == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{form} never printed {expected} within {WAIT:?}; last: {last}"
        );
        thread::park_timeout(Duration::from_millis(20));
    }
}

/// The (registry, directory) addresses of a port mapper's startup line,
/// `… registry on 127.0.0.1:P, directory on 127.0.0.1:Q`.
pub fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let addr = |label: &str| -> Option<SocketAddr> {
        let at = line.find(label)? + label.len();
        line[at..]
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()?
            .parse()
            .ok()
    };
    Some((addr("registry on ")?, addr("directory on ")?))
}

/// Connects to a node's listening port.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Reads the cookie the cluster's nodes use.
pub fn cookie(path: &Path) -> Vec<u8> {
    std::fs::read_to_string(path)
        .expect("cookie file")
        .trim()
        .as_bytes()
        .to_vec()
}

/// Runs the kernel (`-n -b` plus `args`) on `input` to the end, killing it
/// if it takes longer than [`WAIT`]; returns (status, stdout, stderr).
pub fn kernel_batch(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    cmd.args(["-n", "-b"]).args(args);
    run_bounded(cmd, input)
}

/// Runs `cmd` with `input` on stdin, killing it if it takes longer than
/// [`WAIT`]; returns (status, stdout, stderr).
pub fn run_bounded(mut cmd: Command, input: &[u8]) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    run_with_input(cmd, input)
}

/// As [`run_bounded`] for a command whose stdin and stdout are already
/// set up; stdout is then not captured.
pub fn run_bounded_stdout_set(cmd: Command) -> (Option<i32>, String, String) {
    run_with_input(cmd, b"")
}

fn run_with_input(mut cmd: Command, input: &[u8]) -> (Option<i32>, String, String) {
    clean_env(&mut cmd);
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start program");
    let stdin = child.stdin.take();
    let input = input.to_vec();
    // A separate writer: a program that exits early must not block us.
    let writer = thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        // Killed only on timeout, so a recycled pid is never hit.
        if finished.recv_timeout(WAIT).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("program output");
    let _ = done.send(());
    let _ = watchdog.join();
    let _ = writer.join();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
