//! The MCP gateway in front of the real npm servers, driven by the official Rust SDK's client:
//! reads confined to the workspace (every element of an array, paths canonical), undeclared
//! arguments refused, writes approved or rejected by elicitation, a path read from a file never
//! written to, tools listed by policy, the log intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mcp;

use std::sync::{Arc, Mutex};

use kernel::event::EventBody;
use mcp::{Client, call, connect, folder, gateway, memory, text};
use runtime::service::auth::Tokens;
use serde_json::json;

fn client(approve: Option<bool>) -> Client {
    Client {
        approve,
        asked: Arc::new(Mutex::new(Vec::new())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_in_the_workspace_however_the_path_is_spelled() {
    let dir = folder("reads");
    let work = dir.join("work");
    let gw = gateway(&dir, &mcp::config_text(""), memory(), Tokens::default()).await;
    let c = connect(&gw, client(None)).await;

    let notes = format!("{}/notes.txt", work.display());
    let ok = call(&c, "fs__read_text_file", json!({"path": notes})).await;
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    assert!(text(&ok).contains("Meeting notes"));
    assert!(
        ok.structured_content.is_some(),
        "structuredContent is relayed"
    );

    let outside = call(&c, "fs__read_text_file", json!({"path": "/etc/hostname"})).await;
    assert_eq!(outside.is_error, Some(true));
    assert!(
        text(&outside).contains("mcp.fs.workspace_only"),
        "{}",
        text(&outside)
    );
    assert!(
        text(&outside).contains("only files inside the workspace folder may be used"),
        "the policy's @reason: {}",
        text(&outside)
    );

    // `x/../secret/./key.txt` is `secret/key.txt`: the secret rule sees through the spelling.
    let dotted = format!("{}/x/../secret/./key.txt", work.display());
    let secret = call(&c, "fs__read_text_file", json!({"path": dotted})).await;
    assert_eq!(secret.is_error, Some(true));
    assert!(
        text(&secret).contains("mcp.fs.no_secrets"),
        "{}",
        text(&secret)
    );
    assert!(!text(&secret).contains("sk-live"));

    // Every element of an array is confined: one path outside denies the whole call.
    let mixed = json!({"paths": [notes, "/etc/hostname"]});
    let many = call(&c, "fs__read_multiple_files", mixed).await;
    assert_eq!(many.is_error, Some(true));
    assert!(
        text(&many).contains("mcp.fs.workspace_only"),
        "{}",
        text(&many)
    );
    let inside = json!({"paths": [notes, format!("{}/./notes.txt", work.display())]});
    let both = call(&c, "fs__read_multiple_files", inside).await;
    assert_ne!(both.is_error, Some(true), "{}", text(&both));

    // An argument the schema does not declare is refused before any policy runs.
    let extra = call(
        &c,
        "fs__read_text_file",
        json!({"path": notes, "head": 1, "tail2": 3}),
    )
    .await;
    assert_eq!(extra.is_error, Some(true));
    assert!(text(&extra).contains("tail2"), "{}", text(&extra));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_runs_only_when_the_user_approves_it_when_asked() {
    let dir = folder("writes");
    let work = dir.join("work");
    let gw = gateway(&dir, &mcp::config_text(""), memory(), Tokens::default()).await;
    for (approve, name) in [
        (Some(true), "yes.txt"),
        (Some(false), "no.txt"),
        (None, "unasked.txt"),
    ] {
        let asking = client(approve);
        let c = connect(&gw, asking.clone()).await;
        let path = work.join(name);
        let args = json!({"path": path.display().to_string(), "content": "hello"});
        let r = call(&c, "fs__write_file", args).await;
        let asked = asking.asked.lock().unwrap().clone();
        match approve {
            Some(true) => {
                assert_ne!(r.is_error, Some(true), "{}", text(&r));
                assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
                assert_eq!(asked.len(), 1);
                assert!(
                    asked[0].contains("mcp.fs.write_needs_approval"),
                    "{asked:?}"
                );
            }
            Some(false) => {
                assert_eq!(r.is_error, Some(true));
                assert!(text(&r).contains("declined"), "{}", text(&r));
                assert!(!path.exists());
                assert_eq!(asked.len(), 1);
            }
            None => {
                assert_eq!(r.is_error, Some(true));
                assert!(text(&r).contains("cannot be asked"), "{}", text(&r));
                assert!(!path.exists());
            }
        }
        c.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_only_a_file_supplied_is_never_written_to() {
    let dir = folder("provenance");
    let work = dir.join("work");
    let leak = work.join("leak.txt");
    let gw = gateway(&dir, &mcp::config_text(""), memory(), Tokens::default()).await;
    let asking = client(Some(true));
    let c = connect(&gw, asking.clone()).await;
    let notes = format!("{}/notes.txt", work.display());
    let read = call(&c, "fs__read_text_file", json!({"path": notes})).await;
    assert!(text(&read).contains("leak.txt"));
    let args = json!({"path": leak.display().to_string(), "content": "stolen"});
    let w = call(&c, "fs__write_file", args.clone()).await;
    assert_eq!(w.is_error, Some(true));
    assert!(
        text(&w).contains("mcp.fs.write_path_not_from_files"),
        "{}",
        text(&w)
    );
    assert!(!leak.exists());
    assert!(
        asking.asked.lock().unwrap().is_empty(),
        "a denial asks nobody"
    );
    c.cancel().await.unwrap();

    // The same path in the user's own request (passed in `_meta` on the session's first call)
    // comes from the user: the write is asked for, approved and done.
    let c = connect(&gw, asking.clone()).await;
    let request = format!("please save 'ok' to {}", leak.display());
    let mut meta = serde_json::Map::new();
    meta.insert(runtime::gateway::REQUEST_META.into(), json!(request));
    let read = rmcp::model::CallToolRequestParams::new("fs__read_text_file")
        .with_arguments(json!({"path": notes}).as_object().unwrap().clone());
    let mut read = read;
    read.meta = Some(rmcp::model::RequestMetaObject(rmcp::model::MetaObject(
        meta,
    )));
    c.peer().call_tool(read).await.unwrap();
    let w = call(
        &c,
        "fs__write_file",
        json!({"path": leak.display().to_string(), "content": "ok"}),
    )
    .await;
    assert_ne!(w.is_error, Some(true), "{}", text(&w));
    assert_eq!(std::fs::read_to_string(&leak).unwrap(), "ok");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_namespaced_by_server_and_listed_only_if_a_call_could_be_permitted() {
    let dir = folder("listing");
    // A second server (the memory server) whose `delete_entities` is critical: no permit covers a
    // critical tool, so no call to it could ever be permitted and it is not listed.
    let extra = format!(
        "[servers.memory]\ncommand = [\"node\", \"{}\"]\nenv = {{ MEMORY_FILE_PATH = \"{}\" }}\n\n[servers.memory.tools.delete_entities]\nrisk = \"critical\"\n",
        mcp::server("server-memory").display(),
        dir.join("memory.jsonl").display()
    );
    let gw = gateway(&dir, &mcp::config_text(&extra), memory(), Tokens::default()).await;
    assert!(gw.left_out().is_empty(), "{:?}", gw.left_out());
    let c = connect(&gw, client(None)).await;
    let tools = c.peer().list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"fs__read_text_file"), "{names:?}");
    assert!(names.contains(&"memory__create_entities"), "{names:?}");
    assert!(names.contains(&"memory__read_graph"), "{names:?}");
    assert!(!names.contains(&"memory__delete_entities"), "{names:?}");
    // What is listed is the closed schema: no undeclared argument is accepted.
    let create = tools
        .iter()
        .find(|t| t.name == "memory__create_entities")
        .unwrap();
    assert_eq!(
        create.input_schema.get("additionalProperties"),
        Some(&json!(false))
    );

    // Nested objects typed for Cedar and forwarded as decided.
    let entity = json!({"entities": [{"name": "Alice", "entityType": "person", "observations": ["likes tea"]}]});
    let made = call(&c, "memory__create_entities", entity).await;
    assert_ne!(made.is_error, Some(true), "{}", text(&made));
    let graph = call(&c, "memory__read_graph", json!({})).await;
    assert!(text(&graph).contains("likes tea"), "{}", text(&graph));
    // Not listed, and not callable either.
    let gone = call(
        &c,
        "memory__delete_entities",
        json!({"entityNames": ["Alice"]}),
    )
    .await;
    assert_eq!(gone.is_error, Some(true), "{}", text(&gone));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_decision_and_result_is_in_the_session_log() {
    let dir = folder("log");
    let work = dir.join("work");
    let gw = gateway(&dir, &mcp::config_text(""), memory(), Tokens::default()).await;
    let c = connect(&gw, client(Some(true))).await;
    let notes = format!("{}/notes.txt", work.display());
    call(&c, "fs__read_text_file", json!({"path": notes})).await;
    call(&c, "fs__read_text_file", json!({"path": "/etc/hostname"})).await;
    let out = work.join("out.txt").display().to_string();
    call(&c, "fs__write_file", json!({"path": out, "content": "x"})).await;
    c.cancel().await.unwrap();

    let caller = mcp::alice();
    let sessions = gw.service().approvals(&caller).await.unwrap();
    assert!(sessions.is_empty(), "nothing left waiting");
    // One session for the connection; its events tell the whole story, chained.
    let list = gw.service().session_ids(&caller);
    assert_eq!(list.len(), 1, "{list:?}");
    let page = gw
        .service()
        .events_after(&caller, &list[0], None)
        .await
        .unwrap();
    let kinds: Vec<&str> = page.events.iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "tool_returned").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"approval_requested") && kinds.contains(&"approval_granted"));
    let denied = page.events.iter().any(|e| {
        matches!(e.body, EventBody::Decision { .. })
            && e.decision.as_ref().is_some_and(|d| {
                d.effect == kernel::Verdict::Deny
                    && d.policies.iter().any(|p| p.id == "mcp.fs.workspace_only")
            })
    });
    assert!(denied, "the denial is recorded with its policy");
    let log = kernel::event::encode_jsonl(&page.events);
    kernel::event::verify_jsonl(&log).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_token_names_the_caller_and_an_approval_can_come_through_the_api() {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use runtime::service::auth;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = folder("http");
    let mut tokens = Tokens::default();
    tokens.insert(
        &auth::hash("alice-token"),
        "acme".into(),
        "alice@acme".into(),
        false,
    );
    let wait = std::time::Duration::from_secs(20);
    let gw = mcp::waiting(&dir, &mcp::config_text(""), memory(), tokens, wait).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = runtime::gateway::doors::router(gw.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = format!("{base}{}", runtime::gateway::doors::MCP_PATH);

    // Without a token nothing is listed or called.
    let anonymous =
        rmcp::ServiceExt::serve((), StreamableHttpClientTransport::from_uri(url.as_str()))
            .await
            .unwrap();
    assert!(anonymous.peer().list_all_tools().await.is_err());
    let notes = dir.join("work/notes.txt").display().to_string();
    let refused = call(&anonymous, "fs__read_text_file", json!({"path": notes})).await;
    assert!(
        text(&refused).contains("bearer token"),
        "{}",
        text(&refused)
    );
    anonymous.cancel().await.unwrap();

    // With one, and the gateway session named by a header.
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header("alice-token");
    config.custom_headers.insert(
        http::HeaderName::from_static(runtime::gateway::SESSION_HEADER),
        http::HeaderValue::from_static("desk-1"),
    );
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let c = rmcp::ServiceExt::serve((), transport).await.unwrap();
    let read = call(&c, "fs__read_text_file", json!({"path": notes})).await;
    assert_ne!(read.is_error, Some(true), "{}", text(&read));

    // The client cannot be asked; an approver answers through the decision API meanwhile.
    let http = reqwest::Client::new();
    let approver = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            for _ in 0..400 {
                let pending: serde_json::Value = http
                    .get(format!("{base}/v1/approvals"))
                    .bearer_auth("alice-token")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(first) = pending.as_array().and_then(|a| a.first()) {
                    let (session, request) = (
                        first["session"].as_str().unwrap(),
                        first["request_id"].as_str().unwrap(),
                    );
                    let res = http
                        .post(format!(
                            "{base}/v1/sessions/{session}/approvals/{request}/approve"
                        ))
                        .bearer_auth("alice-token")
                        .send()
                        .await
                        .unwrap();
                    return (session.to_owned(), res.status().as_u16());
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("no approval was ever requested");
        })
    };
    let out = dir.join("work/approved.txt");
    let w = call(
        &c,
        "fs__write_file",
        json!({"path": out.display().to_string(), "content": "yes"}),
    )
    .await;
    let (session, status) = approver.await.unwrap();
    assert_eq!((session.as_str(), status), ("desk-1", 200));
    assert_ne!(w.is_error, Some(true), "{}", text(&w));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "yes");
    c.cancel().await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tool_list_is_read_again_before_the_new_tool_is_called() {
    let dir = folder("changing");
    let script = mcp::repo().join("runtime/tests/mcp/changing_server.py");
    let extra = format!(
        "[servers.up]\ncommand = [\"python3\", \"{}\"]\n",
        script.display()
    );
    let gw = gateway(&dir, &mcp::config_text(&extra), memory(), Tokens::default()).await;
    assert!(!gw.catalog().tools.contains_key("up__shout"));
    let c = connect(&gw, client(None)).await;
    let missing = call(&c, "up__shout", json!({"text": "hi"})).await;
    assert_eq!(missing.is_error, Some(true), "{}", text(&missing));
    let echoed = call(&c, "up__echo", json!({"text": "hi"})).await;
    assert_eq!(text(&echoed), "hi");
    // The server said its list changed; the next call re-reads it (and re-validates the policies)
    // first, so the new tool is known to the gateway, listed and typed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let names: Vec<String> = c
            .peer()
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        if names.iter().any(|n| n == "up__shout") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never re-read: {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gw.catalog().tools.contains_key("up__shout"));
    assert!(
        gw.service().current().tool("up__shout").is_some(),
        "registered with the kernel"
    );
    // A session keeps the bundle it started under: this one does not know the new tool...
    let old = call(&c, "up__shout", json!({"text": "hi"})).await;
    assert_eq!(old.is_error, Some(true), "{}", text(&old));
    c.cancel().await.unwrap();
    // ... a new one does.
    let c = connect(&gw, client(None)).await;
    let shouted = call(&c, "up__shout", json!({"text": "hi"})).await;
    assert_eq!(text(&shouted), "HI");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_over_streamable_http_is_relayed_with_its_structured_content() {
    // server-everything over Streamable HTTP on a free loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut node = tokio::process::Command::new("node")
        .arg(mcp::server("server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = folder("http-upstream");
    let extra = format!(
        "[servers.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\n[servers.everything.tools.get-structured-content]\nrisk = \"low\"\noutput_labels = [\"untrusted\"]\n"
    );
    let gw = gateway(&dir, &mcp::config_text(&extra), memory(), Tokens::default()).await;
    let c = connect(&gw, client(None)).await;
    let tools = c.peer().list_all_tools().await.unwrap();
    let weather = tools
        .iter()
        .find(|t| t.name == "everything__get-structured-content")
        .expect("listed under its server's name");
    assert!(
        weather.output_schema.is_some(),
        "the output schema is relayed"
    );

    let echoed = call(&c, "everything__echo", json!({"message": "hi"})).await;
    assert!(text(&echoed).contains("hi"), "{}", text(&echoed));
    let r = call(
        &c,
        "everything__get-structured-content",
        json!({"location": "Chicago"}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let structured = r.structured_content.expect("structuredContent relayed");
    assert!(structured.get("temperature").is_some(), "{structured}");
    // The schema's enum is enforced before the call goes anywhere.
    let paris = call(
        &c,
        "everything__get-structured-content",
        json!({"location": "Paris"}),
    )
    .await;
    assert_eq!(paris.is_error, Some(true));
    assert!(
        text(&paris).contains("refused before any policy ran"),
        "{}",
        text(&paris)
    );
    c.cancel().await.unwrap();
    // Its output labelled the session: what the policies see next.
    let caller = mcp::alice();
    let id = gw.service().session_ids(&caller).pop().unwrap();
    let view = gw.service().get(&caller, &id).await.unwrap();
    assert!(
        view.labels.contains(&"untrusted".to_owned()),
        "{:?}",
        view.labels
    );
    node.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_server_gets_its_configured_environment_and_nothing_else_of_the_gateways() {
    let dir = folder("environment");
    let extra = format!(
        "[servers.ev]\ncommand = [\"node\", \"{}\", \"stdio\"]\nenv = {{ GIVEN_TO_IT = \"yes\" }}\n",
        mcp::server("server-everything").display()
    );
    let gw = gateway(&dir, &mcp::config_text(&extra), memory(), Tokens::default()).await;
    let c = connect(&gw, client(None)).await;
    let r = call(&c, "ev__get-env", json!({})).await;
    let env: serde_json::Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(env["GIVEN_TO_IT"], "yes", "{env}");
    assert!(env.get("PATH").is_some(), "{env}");
    // `cargo test` runs this process with CARGO_* variables; the child sees none of them.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    let leaked: Vec<&String> = env
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("CARGO"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    c.cancel().await.unwrap();
}
