//! A real instance: the `quarry` binary as a child process with the suite's settings, so a test
//! can pause it (SIGSTOP), resume it (SIGCONT), kill it (SIGKILL) and start it again, which an
//! instance inside the test process cannot undergo.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{remember_secret, test_vars};

pub struct Instance {
    vars: HashMap<String, String>,
    child: Child,
    /// `http://127.0.0.1:<port>` of the running process (a new port after each start).
    pub address: String,
    /// The process's log (stdout); its tail is printed when a test fails while it lives.
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(vars: &HashMap<String, String>) -> (Child, String, PathBuf) {
    let port = free_port();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("instance-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{}.log", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("serve")
        .env_clear()
        .envs(vars)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{address}/health/live"))
            .send()
            .await
            .is_ok()
        {
            return (child, address, log);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the instance did not come up (log: {})", log.display());
}

impl Instance {
    /// Starts the binary with the suite's settings, changed by `customize`.
    pub async fn start_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        let mut vars = test_vars();
        customize(&mut vars);
        for name in ["CA_ROOT_API_KEY", "LOCAL_KMS_KEY"] {
            if let Some(secret) = vars.get(name) {
                remember_secret(secret);
            }
        }
        let (child, address, log) = spawn(&vars).await;
        Self {
            vars,
            child,
            address,
            log,
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.child.id());
    }

    /// SIGKILL, then waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again with the same settings (a new port: read [`Instance::address`]).
    pub async fn restart(&mut self) {
        self.kill();
        let (child, address, log) = spawn(&self.vars).await;
        (self.child, self.address, self.log) = (child, address, log);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let what = format!("the instance at {}", self.address);
            crate::log_tail::print_tail(&what, &self.log, 40);
        }
    }
}
