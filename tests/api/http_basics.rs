use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_route_gets_the_json_404() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/admin", "/api/v1/admin/bootstrap/other"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(response, 404, "Resource not found").await;
    }
    // A known path with the wrong method is an unknown route too.
    let response = app
        .client
        .delete(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "Resource not found").await;
}

#[tokio::test]
async fn a_well_formed_request_id_is_echoed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/nope"))
        .header("X-Request-ID", "trace-42_a.b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42_a.b");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-42_a.b");
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_by_a_uuid() {
    let app = spawn_app().await;
    for bad in ["has space", "semi;colon", &"a".repeat(129)] {
        let response = app
            .client
            .get(app.url("/health/live"))
            .header("X-Request-ID", bad)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/health/live", "/nope"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn a_declared_body_over_1_mib_gets_413_on_any_route() {
    let app = spawn_app().await;
    let big = vec![b'a'; 1024 * 1024 + 1];
    for path in ["/health/live", "/api/v1/admin/bootstrap", "/nope"] {
        let response = app
            .client
            .post(app.url(path))
            .header("X-CA-Root-Key", &app.root_key)
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_error(response, 413, "Payload too large").await;
    }
    // The bootstrap was never run.
    assert_eq!(app.status().await["dataset_exists"], false);
}

#[tokio::test]
async fn a_body_of_exactly_1_mib_is_read_and_a_route_without_a_body_refuses_one_unread() {
    let app = spawn_app().await;
    // Read (and found not to be JSON): the cap let it through.
    let response = app
        .client
        .post(app.url("/api/v1/organizations/dryrun"))
        .header("X-CA-Root-Key", &app.root_key)
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "Invalid request format").await;
    // GET routes take no body: refused before a byte of it is read.
    let response = app
        .client
        .get(app.url("/health/live"))
        .body(vec![b'a'; 10])
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "Payload too large").await;
}

/// A chunked upload declares no length: the cap must hold while streaming.
#[tokio::test]
async fn a_streamed_body_over_1_mib_gets_413() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /api/v1/organizations/dryrun HTTP/1.1\r\nHost: {address}\r\n\
                 X-CA-Root-Key: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                app.root_key
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..17 {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if stream.write_all(&frame).await.is_err() {
            break; // the server may close as soon as it has answered
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"message\":\"Payload too large\""), "{text}");
}

/// A load balancer (and our own test client) reuses idle connections for minutes: one the
/// service closed after actix's default 5 s made a request sent at that moment fail (CI saw
/// `IncompleteMessage`; Google's balancer answers 502).
#[tokio::test]
async fn a_connection_idle_for_seconds_still_serves_the_next_request() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /health/live HTTP/1.1\r\nHost: {address}\r\n\r\n");
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
            .await
            .expect("an answer within 5 s");
        assert!(read.is_ok(), "round {round}: the connection was closed");
        assert_eq!(&head, b"HTTP/1.1 200", "round {round}");
        // The rest of this answer: its head, then the body its length declares.
        let mut rest = Vec::new();
        let mut byte = [0u8; 1];
        while !rest.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            rest.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&rest).to_ascii_lowercase();
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a content-length");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
    }
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(|vars| {
        vars.insert("CORS_ORIGINS".into(), "https://app.example.com".into());
    })
    .await;
    let allowed = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        !allowed
            .headers()
            .contains_key("access-control-allow-credentials")
    );

    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/admin/bootstrap"))
        .header("Origin", "https://evil.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // Refused in the standard JSON body, like every other error.
    assert_error(preflight, 400, "Invalid request format").await;

    let other = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn a_wildcard_origin_never_comes_with_credentials() {
    let app = spawn_app_with(|vars| {
        vars.insert("CORS_ORIGINS".into(), "*".into());
    })
    .await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://anywhere.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-credentials")
    );
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_allowed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn a_request_without_any_key_is_told_which_headers_carry_one() {
    let app = spawn_app().await;
    let none: Value = app
        .client
        .get(app.url("/api/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["error"]["message"], "Invalid or inactive API key");
    assert_eq!(
        none["error"]["hint"],
        "send an org API key as X-API-Key, or the root key as X-CA-Root-Key"
    );
    // A wrong key is just refused: no hint about what would work.
    let wrong: Value = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("X-API-Key", "qk_wrong")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["error"]["message"], "Invalid or inactive API key");
    assert!(wrong["error"].get("hint").is_none(), "{wrong}");
}
