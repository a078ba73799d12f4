//! A small W3C WebDriver client for the web view's tests: Debian's chromedriver driving Debian's
//! headless chromium (both installed by `make test`), over the protocol's JSON.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: tokio::process::Child,
    profile: std::path::PathBuf,
}

fn find_binary(names: &[&str]) -> String {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let path = format!("{dir}/{name}");
            if std::path::Path::new(&path).exists() {
                return path;
            }
        }
    }
    panic!(
        "{} not found: the web view's tests need Debian's chromium and chromium-driver \
         (make test installs them: apt-get install chromium chromium-driver)",
        names.join(" or ")
    );
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless chromium session.
    pub async fn start() -> Self {
        let driver_path = find_binary(&["chromedriver"]);
        let chromium = find_binary(&["chromium", "chromium-browser"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Under a subreaper of its own: chromium's crash handlers leave their parent by a double
        // fork, and would otherwise end as orphans of init, outside this test (see the script).
        let driver = tokio::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/subreaper.py"))
            .arg(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so the browser it starts goes with it (see Drop).
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("quarry-ui-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Self {
            http,
            base: format!("{base}/session/{session}"),
            driver,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn find_all_now(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (at most 20 s) until `css` matches at least `n` elements; returns them.
    pub async fn wait_for(&self, css: &str, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let found = self.find_all_now(css).await;
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.eval("return document.body.innerText").await;
        panic!("`{css}`: fewer than {n} element(s) after 20 s; the page reads: {page}");
    }

    /// Waits (at most 20 s) until `css` matches exactly `n` elements (a page re-rendered).
    pub async fn wait_for_exactly(&self, css: &str, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let found = self.find_all_now(css).await;
            if found.len() == n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.eval("return document.body.innerText").await;
        panic!("`{css}`: not exactly {n} element(s) after 20 s; the page reads: {page}");
    }

    pub async fn count(&self, css: &str) -> usize {
        self.find_all_now(css).await.len()
    }

    pub async fn text(&self, element: &str) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves a PNG of the window under `target/ui-artifacts/` (kept as the test's artifact).
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("a screenshot"))
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn quit(self) {
        self.call(reqwest::Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    /// A test that panics leaves no chromedriver or chromium behind: the subreaper ends
    /// chromedriver and reaps everything the browser started; if it has not within 15 s, its
    /// whole process group is killed.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let signal = |args: [&str; 2]| {
                std::process::Command::new("kill")
                    .args(args)
                    .stderr(Stdio::null())
                    .status()
            };
            let _ = signal(["-TERM", &pid.to_string()]);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while matches!(self.driver.try_wait(), Ok(None)) {
                if std::time::Instant::now() > deadline {
                    let _ = signal(["-KILL", &format!("-{pid}")]);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
