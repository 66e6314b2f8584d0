//! `arbiter explain`: one request, decided the way a session decides it (policy index, trimmed
//! context, the kernel's evaluator), with Cedar's own answer beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use kernel::pack::load_packs;

#[derive(clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Packs to load on top of `base` (repeatable).
    #[arg(long = "pack")]
    packs: Vec<String>,
    /// The principal, e.g. `Agent::"assistant@acme"`.
    #[arg(long)]
    principal: String,
    /// The action, e.g. `Action::"refund"` (or just `refund`).
    #[arg(long)]
    action: String,
    /// The resource, e.g. `Tool::"refund"`.
    #[arg(long)]
    resource: String,
    /// The context as JSON, matching the action's context type.
    #[arg(long, default_value = "{}")]
    context: String,
    /// Print the decision record as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let packs: Vec<&str> = args.packs.iter().map(String::as_str).collect();
    let deployment = load_packs(&args.policies, &packs)?;
    let context: serde_json::Value = serde_json::from_str(&args.context)
        .map_err(|e| miette::miette!("--context is not JSON: {e}"))?;
    let action = if args.action.contains("::") {
        args.action.clone()
    } else {
        format!("Action::\"{}\"", args.action)
    };
    let d = deployment.explain(&args.principal, &action, &args.resource, &context);
    if args.json {
        let cf = counterfactual(
            &deployment,
            &args.principal,
            &action,
            &args.resource,
            &context,
        );
        let both = serde_json::json!({ "decision": d, "would_change": cf });
        println!(
            "{}",
            serde_json::to_string_pretty(&both).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("request:     {} {} {}", d.principal, d.action, d.resource);
    println!("decision:    {:?} ({:?})", d.effect, d.basis);
    if d.policies.is_empty() {
        println!("policies:    none matched");
    } else {
        println!("policies:");
        for p in &d.policies {
            let ann: Vec<String> = p
                .annotations
                .iter()
                .map(|(k, v)| format!("@{k}(\"{v}\")"))
                .collect();
            println!("  {} {} {}", p.effect, p.id, ann.join(" "));
        }
    }
    if !d.erred.is_empty() {
        println!("erred:       {} (an error denies)", d.erred.join(", "));
    }
    let o = d.obligations();
    if o.timeout_ms.is_some() || o.max_retries.is_some() {
        println!(
            "obligations: {}",
            serde_json::to_string(&o).unwrap_or_default()
        );
    }
    if let Some(p) = d.approval_policies() {
        println!(
            "approval:    an approver can lift [{}] for this request",
            p.join(", ")
        );
    }
    if let Some(limit) = d.limit() {
        println!("limit:       `{limit}` — a session would stop here");
    }
    for e in &d.errors {
        println!("error:       {e}");
    }
    // Beside the kernel's decision (the path a session takes: policy index, trimmed context, the
    // kernel's evaluator, fail-closed errors), Cedar's own answer on the whole request.
    match deployment.explain_cedar(&args.principal, &action, &args.resource, &context) {
        Ok((allowed, ids, errors)) => {
            let agrees =
                allowed == d.allowed() && (allowed || errors.is_empty() == d.errors.is_empty());
            println!(
                "cedar:       {} by [{}]{}{}",
                if allowed { "Allow" } else { "Deny" },
                ids.join(", "),
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} error(s) skipped", errors.len())
                },
                if agrees {
                    ""
                } else {
                    " — differs: Cedar skips an erroring policy, the kernel denies (fail closed)"
                }
            );
        }
        Err(e) => println!("cedar:       refuses the request: {e}"),
    }
    if let Some(cf) = counterfactual(
        &deployment,
        &args.principal,
        &action,
        &args.resource,
        &context,
    ) {
        print_counterfactual(&cf);
    }
    Ok(ExitCode::SUCCESS)
}

/// What would change the decision (`eval::counterfactual`), for a request that is valid.
fn counterfactual(
    deployment: &kernel::Deployment,
    principal: &str,
    action: &str,
    resource: &str,
    context: &serde_json::Value,
) -> Option<eval::counterfactual::Counterfactual> {
    use eval::counterfactual::uid;
    let asked = eval::counterfactual::Asked {
        uids: (uid(principal)?, uid(action)?, uid(resource)?),
        context,
        schema: deployment.cedar_schema(),
        policies: deployment.cedar_policies(),
        entities: deployment.cedar_entities(),
    };
    eval::counterfactual::counterfactual(&asked)
}

fn print_counterfactual(cf: &eval::counterfactual::Counterfactual) {
    if cf.allowed {
        if cf.closest_forbids.is_empty() {
            println!("closest:     no forbid covers this request");
        }
        for m in &cf.closest_forbids {
            println!(
                "closest:     {} — holds: {}; fails: {}",
                m.policy,
                list(&m.holding),
                list(&m.failing)
            );
        }
        for v in &cf.values {
            println!(
                "would stop:  {} = {} (was {}), by {}: {}",
                v.path, v.would_be, v.was, v.policy, v.then
            );
        }
        return;
    }
    if cf.policies.is_empty() && cf.values.is_empty() {
        println!("would change: nothing found (no single policy or context value flips it)");
    }
    for p in &cf.policies {
        println!("would change: {} {}", p.policy, p.then);
    }
    for v in &cf.values {
        println!(
            "would change: {} = {} (was {}), stepping across {}: {}",
            v.path, v.would_be, v.was, v.policy, v.then
        );
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "—".into()
    } else {
        items.join(", ")
    }
}
