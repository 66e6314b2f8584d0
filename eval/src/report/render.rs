//! The report as Markdown and as one self-contained HTML page: no script, no external style or
//! font, so it opens anywhere and archives as one file. Structure first (landmarks, headings in
//! order, tables with header cells and captions, `<details>` for the long parts), so it reads with
//! a screen reader as well as on screen.

use std::fmt::Write as _;

use super::{PolicyRow, Report, ScenarioRow};
use crate::prove::Verdict;

/// Text for HTML: `&`, `<`, `>`, `"` escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// A fragment id from a name: letters and digits kept, the rest `-`.
fn anchor(prefix: &str, name: &str) -> String {
    let tail: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{tail}")
}

fn mutation_cell(p: &PolicyRow) -> String {
    match p.mutants {
        None => "not run".into(),
        Some((k, 0, _)) => format!("{k} killed, none survive"),
        Some((k, s, _)) => format!("{k} killed, {s} survive"),
    }
}

fn proof_summary(r: &Report) -> String {
    match &r.proofs {
        Ok(p) => {
            let held = p
                .outcomes
                .iter()
                .filter(|o| matches!(o.verdict, Verdict::Holds { .. }))
                .count();
            format!("{held} of {} hold", p.outcomes.len())
        }
        Err(why) => format!("none ({why})"),
    }
}

fn passed(r: &Report) -> usize {
    r.scenarios.iter().filter(|s| s.failures.is_empty()).count()
}

const STYLE: &str = "
body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:0}
main{max-width:72rem;margin:0 auto;padding:1rem 1.5rem 4rem}
header{background:#12355b;color:#fff;padding:1.25rem 1.5rem}
header h1{margin:0;font-size:1.6rem} header p{margin:.25rem 0 0}
h2{border-bottom:2px solid #12355b;padding-bottom:.2rem;margin-top:2.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid #b5b5b5;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#e8eef5}
code,pre{font-family:ui-monospace,monospace;font-size:.9em}
td code{overflow-wrap:anywhere}
pre{background:#f4f4f4;padding:.5rem;overflow-x:auto;white-space:pre-wrap}
.ok{color:#0b6b2e;font-weight:600} .bad{color:#a4161a;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:1rem;padding:0;list-style:none}
.cards li{border:1px solid #b5b5b5;border-radius:.4rem;padding:.6rem .9rem;min-width:12rem}
.cards strong{display:block;font-size:1.4rem}
details{margin:.4rem 0} summary{cursor:pointer}
a{color:#0b4f8a}
";

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Arbiter compliance report — {dir}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>Arbiter compliance report</h1><p>Policies: <code>{dir}</code></p></header>\n<main>\n",
        dir = esc(&r.policies_dir)
    );
    let _ = write!(
        h,
        "<h2 id=\"summary\">Summary</h2>\n<ul class=\"cards\" aria-label=\"Summary figures\">\
         <li><strong>{}/{}</strong>scenarios pass</li>\
         <li><strong>{:.1}%</strong>policy coverage</li>\
         <li><strong>{}</strong>mutation score</li>\
         <li><strong>{}</strong>proofs</li>\
         <li><strong>{}/{}</strong>policy sets validate</li></ul>\n",
        passed(r),
        r.scenarios.len(),
        r.coverage,
        r.mutation.map_or_else(
            || "not run".into(),
            |(s, k, n)| format!("{s:.1}% ({k}/{n})")
        ),
        esc(&proof_summary(r)),
        r.sets.iter().filter(|s| s.result.is_ok()).count(),
        r.sets.len()
    );
    h.push_str(
        "<p>To see why a tool call was allowed and which rule would have stopped it, open its \
         scenario under <a href=\"#scenarios\">Scenarios</a>: each allowed call names the permits \
         that allowed it and the forbids covering that tool, with the conditions under which \
         they would have denied it.</p>\n",
    );

    // Policy sets.
    h.push_str("<h2 id=\"sets\">Policy sets: validation and hashes</h2>\n<table>\n<caption>Each set is base plus one pack, strictly validated against the schema</caption>\n<thead><tr><th scope=\"col\">Set</th><th scope=\"col\">Validation</th><th scope=\"col\">Policies (SHA-256)</th><th scope=\"col\">Schema (SHA-256)</th><th scope=\"col\">Entities (SHA-256)</th></tr></thead>\n<tbody>\n");
    for s in &r.sets {
        match &s.result {
            Ok(hs) => {
                let _ = writeln!(
                    h,
                    "<tr><th scope=\"row\">{}</th><td class=\"ok\">valid</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(&s.name),
                    esc(&hs.policies),
                    esc(&hs.schema),
                    esc(&hs.entities)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<tr><th scope=\"row\">{}</th><td class=\"bad\" colspan=\"4\"><pre>{}</pre></td></tr>",
                    esc(&s.name),
                    esc(e)
                );
            }
        }
    }
    h.push_str("</tbody></table>\n");

    // Policies.
    h.push_str("<h2 id=\"policies\">Policies: coverage and mutation</h2>\n<table>\n<caption>Scenarios: how many scenarios the policy decided something in. Mutants: changed copies of the policy; a surviving mutant is a change no scenario notices.</caption>\n<thead><tr><th scope=\"col\">Policy</th><th scope=\"col\">Effect</th><th scope=\"col\">File</th><th scope=\"col\">Scenarios</th><th scope=\"col\">Mutants</th></tr></thead>\n<tbody>\n");
    for p in &r.policies {
        let cls = if p.scenarios.is_empty() { "bad" } else { "ok" };
        let _ = writeln!(
            h,
            "<tr id=\"{}\"><th scope=\"row\"><code>{}</code></th><td>{}</td><td><code>{}</code></td><td class=\"{cls}\">{}</td><td>{}</td></tr>",
            anchor("policy", &p.id),
            esc(&p.id),
            esc(&p.effect),
            esc(&p.file),
            p.scenarios.len(),
            esc(&mutation_cell(p))
        );
    }
    h.push_str("</tbody></table>\n");
    for p in &r.policies {
        if p.survivors.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<details><summary>Surviving mutants of <code>{}</code> ({})</summary>",
            esc(&p.id),
            p.survivors.len()
        );
        for (what, diff) in &p.survivors {
            let _ = writeln!(h, "<p>{}</p><pre>{}</pre>", esc(what), esc(diff));
        }
        h.push_str("</details>\n");
    }
    h.push_str("<details><summary>Policy texts</summary>\n");
    for p in &r.policies {
        let _ = writeln!(h, "<h3>{}</h3><pre>{}</pre>", esc(&p.id), esc(&p.text));
    }
    h.push_str("</details>\n");

    // Proofs.
    h.push_str("<h2 id=\"proofs\">Proofs over every request</h2>\n");
    match &r.proofs {
        Err(why) => {
            let _ = writeln!(h, "<p class=\"bad\">No proofs: {}.</p>", esc(why));
        }
        Ok(p) => {
            let _ = writeln!(
                h,
                "<p>Solver: <code>{}</code> ({})</p>",
                esc(&p.solver.version),
                esc(&p.solver.to_string())
            );
            h.push_str("<table>\n<caption>Each property, proved for base with each pack</caption>\n<thead><tr><th scope=\"col\">Property</th><th scope=\"col\">Set</th><th scope=\"col\">Verdict</th></tr></thead>\n<tbody>\n");
            for o in &p.outcomes {
                let (cls, verdict) = match &o.verdict {
                    Verdict::Holds { environments } => {
                        ("ok", format!("holds ({environments} request environments)"))
                    }
                    Verdict::Fails {
                        action,
                        counterexample,
                    } => (
                        "bad",
                        format!("FAILS on {action}; counterexample:\n{counterexample}"),
                    ),
                    Verdict::Error { message } => ("bad", format!("undecided: {message}")),
                };
                let _ = writeln!(
                    h,
                    "<tr><th scope=\"row\">{}</th><td>base+{}</td><td class=\"{cls}\"><pre>{}</pre></td></tr>",
                    esc(&o.property),
                    esc(&o.packs.join("+")),
                    esc(&verdict)
                );
            }
            h.push_str("</tbody></table>\n");
            if !p.findings.is_empty() {
                h.push_str("<h3>Findings</h3>\n<ul>\n");
                for f in &p.findings {
                    let what = f.kind.describe();
                    let _ = writeln!(h, "<li><code>{}</code>: {what}</li>", esc(&f.policy));
                }
                h.push_str("</ul>\n");
            }
        }
    }

    // Scenarios.
    let _ = writeln!(
        h,
        "<h2 id=\"scenarios\">Scenarios</h2>\n<p>{} of {} pass.</p>",
        passed(r),
        r.scenarios.len()
    );
    for s in &r.scenarios {
        scenario_html(&mut h, s);
    }

    // Store.
    if let Some(store) = &r.store {
        let _ = writeln!(
            h,
            "<h2 id=\"store\">Store verification</h2>\n<p>Store: <code>{}</code></p>",
            esc(&store.source)
        );
        if let Some(m) = &store.manifest {
            let _ = writeln!(h, "<p>Signed checkpoints: {}</p>", esc(m));
        }
        h.push_str("<table>\n<caption>Each recorded session's hash chain and signature</caption>\n<thead><tr><th scope=\"col\">Session</th><th scope=\"col\">Result</th></tr></thead>\n<tbody>\n");
        for row in &store.sessions {
            let cls = if row.ok { "ok" } else { "bad" };
            let _ = writeln!(
                h,
                "<tr><th scope=\"row\"><code>{}</code></th><td class=\"{cls}\">{}</td></tr>",
                esc(&row.session),
                esc(&row.detail)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn scenario_html(h: &mut String, s: &ScenarioRow) {
    let (cls, result) = if s.failures.is_empty() {
        ("ok", "pass")
    } else {
        ("bad", "FAIL")
    };
    let _ = writeln!(
        h,
        "<details id=\"{}\"><summary><span class=\"{cls}\">{result}</span> <code>{}</code> — {} (ends <code>{}</code>)</summary>",
        anchor("scenario", &s.file),
        esc(&s.file),
        esc(&s.name),
        esc(&s.status)
    );
    for f in &s.failures {
        let _ = writeln!(h, "<p class=\"bad\">{}</p>", esc(f));
    }
    h.push_str("<table>\n<caption>Decision timeline</caption>\n<thead><tr><th scope=\"col\">Time (ms)</th><th scope=\"col\">Event</th><th scope=\"col\">Action</th><th scope=\"col\">Effect</th><th scope=\"col\">Decided by</th><th scope=\"col\">Would have been stopped by</th></tr></thead>\n<tbody>\n");
    for step in &s.timeline {
        let cls = if step.effect == "allow" { "ok" } else { "bad" };
        let stoppers = if step.stoppers.is_empty() {
            String::new()
        } else {
            step.stoppers
                .iter()
                .map(|(id, cond)| format!("<code>{}</code> {}", esc(id), esc(cond)))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"{cls}\">{}</td><td>{}</td><td>{stoppers}</td></tr>",
            step.t_ms,
            esc(&step.kind),
            esc(&step.action),
            esc(&step.effect),
            step.policies
                .iter()
                .map(|p| format!(
                    "<a href=\"#{}\"><code>{}</code></a>",
                    anchor("policy", p),
                    esc(p)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    h.push_str("</tbody></table>\n</details>\n");
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Arbiter compliance report\n\nPolicies: `{}`\n",
        r.policies_dir
    );
    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(
        m,
        "- Scenarios: {} of {} pass",
        passed(r),
        r.scenarios.len()
    );
    let _ = writeln!(m, "- Policy coverage: {:.1}%", r.coverage);
    let _ = writeln!(
        m,
        "- Mutation score: {}",
        r.mutation.map_or_else(
            || "not run".into(),
            |(s, k, n)| format!("{s:.1}% ({k} of {n} killed)")
        )
    );
    let _ = writeln!(m, "- Proofs: {}", proof_summary(r));
    let _ = writeln!(
        m,
        "\n## Policy sets\n\n| set | validation | policies | schema | entities |\n|---|---|---|---|---|"
    );
    for s in &r.sets {
        match &s.result {
            Ok(hs) => {
                let _ = writeln!(
                    m,
                    "| {} | valid | `{}` | `{}` | `{}` |",
                    s.name, hs.policies, hs.schema, hs.entities
                );
            }
            Err(e) => {
                let _ = writeln!(
                    m,
                    "| {} | **invalid**: {} | | | |",
                    s.name,
                    e.replace('\n', " ")
                );
            }
        }
    }
    let _ = writeln!(
        m,
        "\n## Policies\n\n| policy | effect | file | scenarios | mutants |\n|---|---|---|---|---|"
    );
    for p in &r.policies {
        let _ = writeln!(
            m,
            "| `{}` | {} | `{}` | {} | {} |",
            p.id,
            p.effect,
            p.file,
            p.scenarios.len(),
            mutation_cell(p)
        );
    }
    for p in r.policies.iter().filter(|p| !p.survivors.is_empty()) {
        for (what, diff) in &p.survivors {
            let _ = writeln!(
                m,
                "\nSurviving mutant of `{}` ({what}):\n\n```diff\n{diff}```",
                p.id
            );
        }
    }
    let _ = writeln!(m, "\n## Proofs\n");
    match &r.proofs {
        Err(why) => {
            let _ = writeln!(m, "No proofs: {why}.");
        }
        Ok(p) => {
            let _ = writeln!(m, "Solver: {} (`{}`)\n", p.solver.version, p.solver);
            for o in &p.outcomes {
                let verdict = match &o.verdict {
                    Verdict::Holds { environments } => {
                        format!("holds ({environments} request environments)")
                    }
                    Verdict::Fails {
                        action,
                        counterexample,
                    } => {
                        format!("**FAILS** on {action}:\n\n```text\n{counterexample}\n```")
                    }
                    Verdict::Error { message } => format!("**undecided**: {message}"),
                };
                let _ = writeln!(
                    m,
                    "- {} (base+{}): {verdict}",
                    o.property,
                    o.packs.join("+")
                );
            }
            for f in &p.findings {
                let what = f.kind.describe();
                let _ = writeln!(m, "- finding: `{}` {what}", f.policy);
            }
        }
    }
    let _ = writeln!(m, "\n## Scenarios\n");
    for s in &r.scenarios {
        let result = if s.failures.is_empty() {
            "pass"
        } else {
            "**FAIL**"
        };
        let _ = writeln!(m, "### {result} `{}` — {}\n", s.file, s.name);
        for f in &s.failures {
            let _ = writeln!(m, "- {f}");
        }
        let _ = writeln!(
            m,
            "| ms | event | action | effect | decided by | would have been stopped by |\n|---|---|---|---|---|---|"
        );
        for step in &s.timeline {
            let stoppers = step
                .stoppers
                .iter()
                .map(|(id, c)| format!("`{id}` {}", c.replace('|', "\\|")))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                m,
                "| {} | {} | `{}` | {} | {} | {} |",
                step.t_ms,
                step.kind,
                step.action,
                step.effect,
                step.policies.join(", "),
                stoppers
            );
        }
        m.push('\n');
    }
    if let Some(store) = &r.store {
        let _ = writeln!(m, "## Store verification\n\nStore: `{}`\n", store.source);
        if let Some(man) = &store.manifest {
            let _ = writeln!(m, "Signed checkpoints: {man}\n");
        }
        for row in &store.sessions {
            let _ = writeln!(m, "- `{}`: {}", row.session, row.detail);
        }
    }
    m
}
