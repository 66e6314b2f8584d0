//! Normalization: text → tokens, the unit of provenance matching.
//!
//! A token is a maximal run of letters and digits, lower-cased (Unicode), or a single other visible
//! character (`@`, `.`, `-`, ...); whitespace only separates. A value matches content when its
//! tokens appear there contiguously, so `US12 2000` is found inside "pay US12 2000 today", while
//! `US12 2001`, `2000` inside `20001`, and `bob@x.com` inside `bob@x.com.evil` (extra tokens are
//! fine, but `bob@x.co` is not) behave as whole-token matching should.
//!
//! Lower-casing is `char::to_lowercase`, applied the same way to both sides; it is not full case
//! folding (`ß` and `ss` differ) and there is no compatibility normalization (full-width digits
//! differ from ASCII ones).

/// The tokens of `text`, in order.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() && !c.is_control() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_and_punctuation_stands_alone() {
        assert_eq!(
            tokens("  Pay US12 2000,\tto Bob@X.com!\n"),
            [
                "pay", "us12", "2000", ",", "to", "bob", "@", "x", ".", "com", "!"
            ]
        );
        assert_eq!(tokens(""), Vec::<String>::new());
        assert_eq!(tokens(" \n\t "), Vec::<String>::new());
    }

    #[test]
    fn unicode_letters_fold_case_and_stay_in_their_word() {
        assert_eq!(tokens("ÉCOLE Straße"), ["école", "straße"]);
        assert_eq!(tokens("Ωμέγα"), tokens("ΩΜΈΓΑ"));
        assert_eq!(tokens("naïve-café"), ["naïve", "-", "café"]);
    }
}
