//! One moto server per test binary: `MOTO_ENDPOINT` when set, else `hack/moto_server.py` started
//! on a free port. The launcher stops when this process's end of its stdin pipe closes, which
//! the OS does when the test binary exits, so no server outlives the run.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

struct Launched {
    endpoint: String,
    // Held for the life of the process: dropping the pipe (at exit) stops the server.
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

static MOTO: OnceLock<Launched> = OnceLock::new();

fn launch() -> Launched {
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        return Launched {
            endpoint,
            _stdin: None,
            _child: None,
        };
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/moto_server.py");
    let mut child = Command::new("python3")
        .args([script, "--port", "0", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {script}: {e} (is python3 installed?)"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("reading the moto port");
    let port: u16 = first.trim().parse().unwrap_or_else(|_| {
        panic!("moto_server.py printed {first:?} instead of a port; is moto installed? (pip install 'moto[server]>=5,<6')")
    });
    Launched {
        endpoint: format!("http://127.0.0.1:{port}"),
        _stdin: child.stdin.take(),
        _child: Some(child),
    }
}

/// The moto endpoint, starting the server on first use.
pub fn endpoint() -> &'static str {
    &MOTO.get_or_init(launch).endpoint
}
