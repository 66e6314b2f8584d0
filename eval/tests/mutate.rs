//! Mutation operators on one file: which mutants a policy yields, spliced in place so the rest of
//! the file is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use eval::mutate::{Operator, mutants};
use kernel::Source;

const FILE: &str = r#"// Two policies; the comment and the second policy must survive every mutant of the first.
@id("t.refund.cap")
@approval("approver")
forbid (principal, action == Action::"issue_refund", resource)
when { context.input.amount > 100 && !(principal.roles.contains("senior")) };

@id("t.permit")
permit (principal, action, resource);
"#;

#[test]
fn every_operator_yields_its_mutants_and_each_is_printed_as_a_diff() {
    let all = mutants(&Source::new("t.cedar", FILE));
    let listing: Vec<String> = all
        .iter()
        .map(|m| format!("{} / {:?}\n{}", m.policy, m.operator, m.diff))
        .collect();
    insta::assert_snapshot!(listing.join("\n"));
}

#[test]
fn a_mutant_changes_its_policy_and_nothing_else_in_the_file() {
    let all = mutants(&Source::new("t.cedar", FILE));
    let bound: Vec<_> = all
        .iter()
        .filter(|m| m.operator == Operator::MoveBound)
        .collect();
    assert_eq!(bound.len(), 2, "100 moved down and up");
    for m in &bound {
        assert!(m.text.starts_with("// Two policies;"), "{}", m.text);
        assert!(
            m.text
                .ends_with("\n\n@id(\"t.permit\")\npermit (principal, action, resource);\n"),
            "{}",
            m.text
        );
    }
    assert!(bound[0].text.contains("> 99"), "{}", bound[0].text);
    assert!(bound[1].text.contains("> 101"), "{}", bound[1].text);
    let dropped = all
        .iter()
        .find(|m| m.operator == Operator::DropPolicy && m.policy == "t.refund.cap")
        .unwrap();
    assert!(!dropped.text.contains("issue_refund"), "{}", dropped.text);
    assert!(dropped.text.contains("t.permit"));
}

#[test]
fn a_file_that_does_not_parse_has_no_mutants() {
    assert!(mutants(&Source::new("bad.cedar", "permit (principal")).is_empty());
}
