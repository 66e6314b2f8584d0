//! Shape limits checked on a policy file's text before Cedar parses it. Cedar's parser, its JSON
//! form and the policy index recurse once per nesting level and once per `&&`/`||` operand, so a
//! file nested a thousand deep overflows the stack and aborts the process, and a policy of
//! thousands of clauses makes loading quadratic. Human-written policies stay far inside both
//! limits; past them the file is refused with a located error instead.

/// Brackets (`(`, `[`, `{`) open at once.
pub(crate) const MAX_NESTING: usize = 64;
/// `&&` and `||` operators in one policy.
pub(crate) const MAX_OPERATORS: usize = 500;

/// The first place `text` passes a limit: its byte offset, and why.
pub(crate) fn check(text: &str) -> Result<(), (usize, String)> {
    let b = text.as_bytes();
    let (mut depth, mut operators, mut i) = (0usize, 0usize, 0usize);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                // Skip the string literal, escapes included.
                i += 1;
                while let Some(&s) = b.get(i) {
                    match s {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while b.get(i).is_some_and(|&s| s != b'\n') {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err((
                        i,
                        format!(
                            "brackets nested deeper than {MAX_NESTING} levels: flatten the condition"
                        ),
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => operators = 0,
            b'&' | b'|' if b.get(i + 1) == Some(&c) => {
                operators += 1;
                i += 1;
                if operators > MAX_OPERATORS {
                    return Err((
                        i - 1,
                        format!(
                            "more than {MAX_OPERATORS} `&&`/`||` operators in one policy: split it, \
                             or test membership in a set (`[\"a\", \"b\"].contains(x)`)"
                        ),
                    ));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_do_not_count() {
        let quoted = format!(
            "permit(principal, action, resource) when {{ \"{}\" == \"x\" }};",
            "(".repeat(500)
        );
        assert_eq!(check(&quoted), Ok(()));
        let commented = format!(
            "// {}\npermit(principal, action, resource);",
            "&&".repeat(900)
        );
        assert_eq!(check(&commented), Ok(()));
        let escaped = "permit(principal, action, resource) when { \"a\\\"((\" == \"b\" };";
        assert_eq!(check(escaped), Ok(()));
    }

    #[test]
    fn operators_are_counted_per_policy() {
        let one = format!(
            "permit(principal, action, resource) when {{ {} }};",
            vec!["true"; 400].join(" && ")
        );
        let two = format!("{one}\n{one}");
        assert_eq!(check(&two), Ok(()));
        let big = format!(
            "permit(principal, action, resource) when {{ {} }};",
            vec!["true"; 502].join(" || ")
        );
        assert!(check(&big).is_err());
    }
}
