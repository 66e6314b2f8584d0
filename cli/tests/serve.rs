//! The README's `arbiter token` and `arbiter serve` commands as a newcomer runs them: tokens go to
//! a file as hashes, the service starts on a loopback port, a session opens with the token and not
//! without it, and SIGINT stops it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod served;
use served::{Served, request};

#[test]
fn a_token_and_a_served_session_as_the_readme_shows() {
    let dir = std::env::temp_dir().join(format!("arbiter-cli-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    let token = served::token(&tokens);
    let file = std::fs::read_to_string(&tokens).unwrap();
    assert!(!file.contains(&token), "the file keeps only the hash");
    assert!(file.contains("tenant = \"shopco\""), "{file}");

    let server = Served::start(&tokens, &[]);
    let addr = server.addr().to_owned();
    let body =
        r#"{"id":"t-1","agent":"support@shopco","budget":"shopco","request":"Where is ord-5?"}"#;
    let (status, _) = request(&addr, "POST", "/v1/sessions", None, body);
    assert_eq!(status, 401);
    let (status, created) = request(&addr, "POST", "/v1/sessions", Some(&token), body);
    assert_eq!(status, 201, "{created}");
    assert!(created.contains("\"status\":\"running\""), "{created}");
    let (status, doc) = request(&addr, "GET", "/openapi.json", None, "");
    assert_eq!(status, 200);
    assert!(
        doc.contains("\"openapi\": \"3.1"),
        "{}",
        &doc[..100.min(doc.len())]
    );
    let status = server.stop();
    assert!(status.success(), "stops cleanly on SIGINT: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
