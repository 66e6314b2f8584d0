//! `arbiter mcp-gateway` over stdio, as the `mcp_gateway` benchmark runs it: `gateway_stdio
//! POLICIES PACK CONFIG`, sessions in memory. A binary of this crate so the benchmark can start
//! it as a process (`CARGO_BIN_EXE_gateway_stdio`), as a desktop assistant starts the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use runtime::gateway::{Gateway, config, doors};
use runtime::service::PolicySource;
use runtime::service::auth::{Caller, Tokens};
use runtime::store::InMemoryStore;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policies, pack, config_path] = args.as_slice() else {
        panic!("usage: gateway_stdio POLICIES PACK CONFIG");
    };
    let loaded = config::load(std::path::Path::new(config_path), &|k| {
        std::env::var(k).ok()
    })
    .unwrap();
    let principal = loaded.file.principal.clone().unwrap();
    let caller = Caller {
        tenant: principal.tenant,
        user: principal.user,
        admin: false,
    };
    let source = PolicySource {
        root: policies.into(),
        packs: vec![pack.clone()],
        tools: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(InMemoryStore::default());
        let gateway = Gateway::start(source, Tokens::default(), store, loaded, Default::default())
            .await
            .unwrap();
        doors::stdio(gateway, caller).await.unwrap();
    });
}
