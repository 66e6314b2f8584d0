//! Normalization: text → tokens, the unit of provenance matching.
//!
//! Text is first brought to Unicode NFKC (full-width digits, ligatures and other compatibility
//! forms become their plain equivalents) and fully case-folded (`Straße` = `STRASSE`, `ǅ` = `dž`).
//! A token is then a maximal run of letters and digits, or a single other visible character (`@`, `.`, `-`, ...); whitespace only
//! separates. A value matches content when its tokens appear there contiguously, so `US12 2000` is
//! found inside "pay US12 2000 today", while `US12 2001`, `2000` inside `20001`, and `bob@x.com`
//! inside `bob@x.com.evil` (extra tokens are fine, but `bob@x.co` is not) behave as whole-token
//! matching should.
//!
//! **Numbers by value.** A decimal number written without spaces (`98.70`, `1,250.00`,
//! `100.0`) is one token holding its value in a canonical form: thousands separators (`,` before
//! groups of exactly three digits) dropped, trailing zeros of the fraction dropped, the point
//! dropped with an empty fraction. So `98.7` matches `98.70` and `100` matches `100.0` and
//! `1,250`. A dotted chain (`10.0.0.1`, `1.2.3`, `19.05.2024`) is not a number and keeps every
//! token (`10.0.0.1` must not match `10.0.0.10`).
//!
//! Folding is Unicode's default (locale-free) case folding: the Turkish dotless `ı` stays apart
//! from `i`.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

/// The tokens of `text`, in order.
pub fn tokens(text: &str) -> Vec<String> {
    glued_tokens(text).into_iter().map(|(t, _)| t).collect()
}

/// The tokens of `text`, each with whether it touches the previous one (no whitespace between).
pub fn glued_tokens(text: &str) -> Vec<(String, bool)> {
    // ASCII text is already in NFKC and folds by lower-casing: most text skips the normalizer.
    let raw = if text.is_ascii() {
        split(text.chars())
    } else {
        // NFKC, fold, NFKC again: folding can leave text that is not normalized (Unicode's
        // NFKC_Casefold is defined the same way).
        let folded: String = text.nfkc().default_case_fold().collect();
        split(folded.nfkc())
    };
    if raw.iter().any(|(t, _)| t == "." || t == ",") {
        numbers(raw)
    } else {
        raw
    }
}

fn split(chars: impl Iterator<Item = char>) -> Vec<(String, bool)> {
    let mut raw: Vec<(String, bool)> = Vec::new();
    let mut word = String::new();
    let mut glued = false;
    for c in chars {
        if c.is_alphanumeric() {
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else {
                word.extend(c.to_lowercase());
            }
            continue;
        }
        if !word.is_empty() {
            raw.push((std::mem::take(&mut word), glued));
            glued = true;
        }
        if c.is_whitespace() || c.is_control() {
            glued = false;
        } else {
            raw.push((c.to_string(), glued));
            glued = true;
        }
    }
    if !word.is_empty() {
        raw.push((word, glued));
    }
    if let Some(first) = raw.first_mut() {
        first.1 = false;
    }
    raw
}

fn is_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// Merges each decimal number (see the module doc) into one canonical token.
fn numbers(raw: Vec<(String, bool)>) -> Vec<(String, bool)> {
    let at = |i: usize| raw.get(i).map(|(t, g)| (t.as_str(), *g));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some((tok, glued)) = at(i) {
        // A number starts at a digit run that does not continue a dotted chain.
        let after_dot = i > 0 && glued && at(i - 1).is_some_and(|(t, _)| t == ".");
        if !is_digits(tok) || after_dot {
            out.push((tok.to_owned(), glued));
            i += 1;
            continue;
        }
        let mut int = tok.to_owned();
        let mut j = i + 1;
        // Thousands groups: `,ddd` glued on both sides, after a first group of one to three digits.
        if tok.len() <= 3 {
            while let (Some((",", true)), Some((g, true))) = (at(j), at(j + 1)) {
                if g.len() != 3 || !is_digits(g) {
                    break;
                }
                int.push_str(g);
                j += 2;
            }
        }
        let mut frac = String::new();
        if let (Some((".", true)), Some((f, true))) = (at(j), at(j + 1))
            && is_digits(f)
        {
            // `a.b.c` is a chain, not a number: leave all of it as it was.
            let chain = matches!(at(j + 2), Some((".", true)))
                && at(j + 3).is_some_and(|(t, g)| g && is_digits(t));
            if chain {
                for k in i..j + 2 {
                    if let Some((t, g)) = at(k) {
                        out.push((t.to_owned(), g));
                    }
                }
                i = j + 2;
                continue;
            }
            frac = f.trim_end_matches('0').to_owned();
            j += 2;
        }
        let merged = j > i + 1;
        if !merged {
            out.push((tok.to_owned(), glued));
            i += 1;
            continue;
        }
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let canonical = if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        };
        out.push((canonical, glued));
        i = j;
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
        assert_eq!(tokens("ÉCOLE Straße"), ["école", "strasse"]);
        assert_eq!(tokens("STRASSE"), tokens("Straße"));
        assert_eq!(tokens("ﬀ"), tokens("FF"));
        assert_eq!(tokens("Ωμέγα"), tokens("ΩΜΈΓΑ"));
        assert_eq!(tokens("naïve-café"), ["naïve", "-", "café"]);
    }

    #[test]
    fn numbers_match_by_value_and_chains_stay_apart() {
        assert_eq!(tokens("98.70"), tokens("98.7"));
        assert_eq!(tokens("100.0"), tokens("100"));
        assert_eq!(tokens("1,250.00 EUR"), ["1250", "eur"]);
        assert_eq!(tokens("$1,250"), ["$", "1250"]);
        assert_ne!(tokens("10.0.0.1"), tokens("10.0.0.10"));
        assert_eq!(tokens("10.0.0.1"), ["10", ".", "0", ".", "0", ".", "1"]);
        assert_eq!(tokens("v1.2.3"), ["v1", ".", "2", ".", "3"]);
        // A list is not a thousands group; a sentence's full stop is not a decimal point.
        assert_eq!(tokens("3, 500"), ["3", ",", "500"]);
        assert_eq!(
            tokens("It costs 5. 20 later"),
            ["it", "costs", "5", ".", "20", "later"]
        );
        // Identifiers keep their leading zeros.
        assert_eq!(tokens("0517"), ["0517"]);
    }

    #[test]
    fn compatibility_forms_are_normalized() {
        assert_eq!(tokens("１２３"), tokens("123"));
        assert_eq!(tokens("ﬁle"), tokens("file"));
    }
}
