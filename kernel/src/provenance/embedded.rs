//! Links and addresses inside free text: a message body that carries a URL or an email address
//! passes every recipient rule, so each one embedded in a string argument gets its own origin.
//!
//! An embedded identifier is a whitespace-separated word, stripped of the punctuation around it,
//! that is a URL (`scheme://…` or `www.…`) or an email address (`local@domain.tld`). Deliberately
//! simple: it finds what a human would click or reply to, and misses obfuscated forms
//! (`evil[.]example`, `hxxp://`).

/// The URLs and email addresses embedded in `text`, in order.
pub fn embedded(text: &str) -> Vec<&str> {
    if !(text.contains("://") || text.contains('@') || text.contains("www.")) {
        return Vec::new();
    }
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| {
                matches!(
                    c,
                    '(' | ')'
                        | '<'
                        | '>'
                        | '['
                        | ']'
                        | '{'
                        | '}'
                        | '"'
                        | '\''
                        | ','
                        | ';'
                        | ':'
                        | '!'
                        | '?'
                        | '.'
                )
            })
        })
        .filter(|w| is_url(w) || is_email(w))
        .collect()
}

fn is_url(w: &str) -> bool {
    let rest = match w.split_once("://") {
        Some((scheme, rest)) => {
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return false;
            }
            rest
        }
        None => match w.strip_prefix("www.") {
            Some(rest) => rest,
            None => return false,
        },
    };
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|host| host.contains('.') || host.contains(':'))
}

fn is_email(w: &str) -> bool {
    let Some((local, domain)) = w.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::embedded;

    #[test]
    fn urls_and_addresses_are_found_in_prose() {
        assert_eq!(
            embedded("Reset it at https://evil.example/reset?u=1, or mail (help@corp.example)."),
            ["https://evil.example/reset?u=1", "help@corp.example"]
        );
        assert_eq!(embedded("see www.site.example today"), ["www.site.example"]);
        assert!(embedded("meet at 10.30, bring a@b").is_empty());
        assert!(embedded("no links here: 3.14 and x@y").is_empty());
    }
}
