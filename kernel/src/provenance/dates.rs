//! Dates and times by what they name, so `2024-05-19` is found in "May 19th" and `15:00` in
//! "3pm".
//!
//! Recognized in content and in values (English month names; tokens as [`super::tokens`] makes
//! them):
//! - ISO `2024-05-19`, `2024/05/19`, with an optional time `T10:30[:00][Z|±hh:mm]`;
//! - `19.05.2024` (always day first);
//! - `05/19/2024`, `19/05/24`: the first number is the day or the month by the user's locale; a
//!   form both readings fit (`05/06/2024`) is no date at all when the locale is unknown;
//! - `May 19`, `May 19th, 2024`, `19 May 2024`, `the 19th of May`;
//! - times `10:30`, `10:30:00`, `10:30pm`, `3pm`, `3 pm`.
//!
//! Time zones are read past, not converted: a time matches the same wall-clock time written
//! elsewhere. Midnight in a date-time (`2024-05-19T00:00:00Z`) names the day alone.
//!
//! Each mention's token span is also what the short-number rule uses: a lone number (`13`) found
//! only inside a date or time ("June 13") is not the same value.

/// The order of day and month in an all-numeric date such as `05/06/2024`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DateOrder {
    /// Unknown locale: an ambiguous all-numeric date names no day.
    #[default]
    Unknown,
    /// `05/06/2024` is May 6 (`en-US` and a few other regions).
    MonthFirst,
    /// `05/06/2024` is June 5 (most of the world).
    DayFirst,
}

impl DateOrder {
    /// The order a BCP 47 locale (`en-US`, `de_DE`, `fr-CA`) writes; `Unknown` without a region or
    /// for regions that write the year first.
    pub fn of_locale(locale: &str) -> Self {
        let region = locale
            .split(['-', '_'])
            .skip(1)
            .find(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_alphabetic()));
        match region.map(str::to_ascii_uppercase).as_deref() {
            None => Self::Unknown,
            Some("US" | "PH" | "FM" | "MH" | "PW" | "AS" | "GU" | "MP" | "PR" | "UM" | "VI") => {
                Self::MonthFirst
            }
            Some("CN" | "JP" | "KR" | "TW" | "HU" | "LT" | "MN" | "IR") => Self::Unknown,
            Some(_) => Self::DayFirst,
        }
    }
}

/// A calendar day, with or without its year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    /// The year, when written.
    pub year: Option<u16>,
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
}

/// A date or time found in a token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mention {
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
    /// The day named (none for a time alone, or an ambiguous numeric date).
    pub day: Option<Day>,
    /// Hour and minute (24-hour clock).
    pub time: Option<(u8, u8)>,
}

/// A day, a time of day, or both.
pub type Named = (Option<Day>, Option<(u8, u8)>);

type Toks<'a> = &'a [(String, bool)];

fn tok(toks: Toks<'_>, i: usize) -> Option<&str> {
    toks.get(i).map(|(t, _)| t.as_str())
}

/// Token `i`, only when glued to the one before it.
fn glued(toks: Toks<'_>, i: usize) -> Option<&str> {
    toks.get(i).filter(|(_, g)| *g).map(|(t, _)| t.as_str())
}

fn number(t: &str, digits: std::ops::RangeInclusive<usize>) -> Option<u16> {
    (digits.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

fn month_named(t: &str) -> Option<u8> {
    Some(match t {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

/// `19`, `19th`, `1st`, `2nd`, `3rd`.
fn ordinal(t: &str) -> Option<u8> {
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = t.get(digits.len()..)?;
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    number(digits, 1..=2).and_then(|n| u8::try_from(n).ok())
}

fn day(year: Option<u16>, month: u16, day: u16) -> Option<Day> {
    let (month, day) = (u8::try_from(month).ok()?, u8::try_from(day).ok()?);
    let last = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => match year {
            Some(y) if !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) => 28,
            _ => 29,
        },
        _ => return None,
    };
    (1..=last)
        .contains(&day)
        .then_some(Day { year, month, day })
}

fn clock(hour: u16, minute: u16, meridiem: Option<&str>) -> Option<(u8, u8)> {
    let hour = match meridiem {
        Some("am") if (1..=12).contains(&hour) => hour % 12,
        Some("pm") if (1..=12).contains(&hour) => hour % 12 + 12,
        Some(_) => return None,
        None if hour < 24 => hour,
        None => return None,
    };
    if minute >= 60 {
        return None;
    }
    Some((u8::try_from(hour).ok()?, u8::try_from(minute).ok()?))
}

/// Every date and time mention in `toks`, in order, none overlapping.
pub fn scan(toks: Toks<'_>, order: DateOrder) -> Vec<Mention> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let found = tok(toks, i).and_then(|t| {
            let first = t.as_bytes().first()?;
            if first.is_ascii_digit() {
                iso(toks, i)
                    .or_else(|| numeric(toks, i, order))
                    .or_else(|| day_month(toks, i))
                    .or_else(|| time(toks, i))
            } else {
                month_day(toks, i)
            }
        });
        match found {
            Some(m) => {
                i = m.end.max(i + 1);
                out.push(m);
            }
            None => i += 1,
        }
    }
    out
}

/// `2024-05-19`, `2024/05/19`, with an optional glued `T` time.
fn iso(toks: Toks<'_>, i: usize) -> Option<Mention> {
    let year = number(tok(toks, i)?, 4..=4)?;
    let sep = glued(toks, i + 1).filter(|s| *s == "-" || *s == "/")?;
    let month = number(glued(toks, i + 2)?, 1..=2)?;
    if glued(toks, i + 3)? != sep {
        return None;
    }
    let last = glued(toks, i + 4)?;
    // `19` or, with a time, `19t10` (the `T` joins day and hour into one token).
    let (d, hour) = match last.split_once('t') {
        Some((d, h)) => (number(d, 1..=2)?, Some(number(h, 1..=2)?)),
        None => (number(last, 1..=2)?, None),
    };
    let named = day(Some(year), month, d)?;
    let mut end = i + 5;
    let mut time = None;
    if let Some(hour) = hour {
        let minute = glued(toks, end)
            .filter(|c| *c == ":")
            .and(glued(toks, end + 1))
            .and_then(|m| number(m.trim_end_matches('z'), 2..=2));
        if let Some(minute) = minute {
            time = clock(hour, minute, None);
            end += 2;
            end = zone_and_seconds(toks, end);
        }
    }
    Some(Mention {
        start: i,
        end,
        day: Some(named),
        time: time.filter(|t| *t != (0, 0)),
    })
}

/// Skips `:ss`, `.fff`, `Z` and `±hh:mm` glued after a time.
fn zone_and_seconds(toks: Toks<'_>, mut end: usize) -> usize {
    // Seconds with a fraction arrive as one number token (`00.000` reads as `0`).
    let seconds = |s: &str| {
        let s = s.trim_end_matches('z');
        !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    };
    if glued(toks, end) == Some(":") && glued(toks, end + 1).is_some_and(seconds) {
        end += 2;
        if glued(toks, end) == Some(".")
            && glued(toks, end + 1)
                .is_some_and(|f| f.trim_end_matches('z').bytes().all(|b| b.is_ascii_digit()))
        {
            end += 2;
        }
    }
    if glued(toks, end) == Some("z") {
        end += 1;
    }
    if matches!(glued(toks, end), Some("+" | "-"))
        && glued(toks, end + 1).is_some_and(|h| number(h, 2..=2).is_some())
    {
        end += 2;
        if glued(toks, end) == Some(":")
            && glued(toks, end + 1).is_some_and(|m| number(m, 2..=2).is_some())
        {
            end += 2;
        }
    }
    end
}

/// `19.05.2024` (day first) and `05/19/2024` (by locale).
fn numeric(toks: Toks<'_>, i: usize, order: DateOrder) -> Option<Mention> {
    let a = number(tok(toks, i)?, 1..=2)?;
    let sep = glued(toks, i + 1).filter(|s| *s == "." || *s == "/")?;
    let b = number(glued(toks, i + 2)?, 1..=2)?;
    if glued(toks, i + 3)? != sep {
        return None;
    }
    let y = glued(toks, i + 4)?;
    let year = match y.len() {
        4 => number(y, 4..=4)?,
        2 => 2000 + number(y, 2..=2)?,
        _ => return None,
    };
    let day_first = day(Some(year), b, a);
    let month_first = day(Some(year), a, b);
    let named = match (sep, day_first, month_first) {
        (".", d, _) => d,
        (_, Some(d), None) => Some(d),
        (_, None, Some(m)) => Some(m),
        (_, Some(d), Some(m)) => match order {
            DateOrder::DayFirst => Some(d),
            DateOrder::MonthFirst => Some(m),
            DateOrder::Unknown => None,
        },
        (_, None, None) => return None,
    };
    Some(Mention {
        start: i,
        end: i + 5,
        day: named,
        time: None,
    })
}

/// `May 19`, `May 19th, 2024`.
fn month_day(toks: Toks<'_>, i: usize) -> Option<Mention> {
    let month = month_named(tok(toks, i)?)?;
    let (_, g) = toks.get(i + 1)?;
    if *g {
        return None;
    }
    let d = ordinal(tok(toks, i + 1)?)?;
    let (year, end) = year_after(toks, i + 2);
    Some(Mention {
        start: i,
        end,
        day: Some(day(year, u16::from(month), u16::from(d))?),
        time: None,
    })
}

/// `19 May 2024`, `19th of May`.
fn day_month(toks: Toks<'_>, i: usize) -> Option<Mention> {
    let d = ordinal(tok(toks, i)?)?;
    let mut j = i + 1;
    if tok(toks, j) == Some("of") {
        j += 1;
    }
    let month = month_named(tok(toks, j)?)?;
    let (year, end) = year_after(toks, j + 1);
    Some(Mention {
        start: i,
        end,
        day: Some(day(year, u16::from(month), u16::from(d))?),
        time: None,
    })
}

/// An optional `[,] 2024` at `j`: the year and the end of the mention.
fn year_after(toks: Toks<'_>, j: usize) -> (Option<u16>, usize) {
    let k = if tok(toks, j) == Some(",") { j + 1 } else { j };
    match tok(toks, k).and_then(|y| number(y, 4..=4)) {
        Some(y) if (1000..=2999).contains(&y) => (Some(y), k + 1),
        _ => (None, j),
    }
}

/// `10:30`, `10:30:00`, `10:30pm`, `10:30 pm`, `3pm`, `3 pm`.
fn time(toks: Toks<'_>, i: usize) -> Option<Mention> {
    let first = tok(toks, i)?;
    let meridiem_of = |t: &str| match t {
        "am" | "pm" => Some(t.to_owned()),
        _ => None,
    };
    // `3pm` as one token.
    if let Some(h) = first
        .strip_suffix("am")
        .or_else(|| first.strip_suffix("pm"))
    {
        let m = first.get(h.len()..);
        let t = clock(number(h, 1..=2)?, 0, m)?;
        return Some(Mention {
            start: i,
            end: i + 1,
            day: None,
            time: Some(t),
        });
    }
    let hour = number(first, 1..=2)?;
    if glued(toks, i + 1) == Some(":") {
        let raw = glued(toks, i + 2)?;
        let (digits, glued_meridiem) =
            match raw.strip_suffix("am").or_else(|| raw.strip_suffix("pm")) {
                Some(d) => (d, raw.get(d.len()..).map(str::to_owned)),
                None => (raw, None),
            };
        let minute = number(digits, 2..=2)?;
        let mut end = i + 3;
        if glued_meridiem.is_none()
            && glued(toks, end) == Some(":")
            && glued(toks, end + 1)
                .and_then(|s| number(s, 2..=2))
                .is_some()
        {
            end += 2;
        }
        let meridiem = glued_meridiem.or_else(|| {
            let m = tok(toks, end).and_then(meridiem_of);
            if m.is_some() {
                end += 1;
            }
            m
        });
        let t = clock(hour, minute, meridiem.as_deref())?;
        return Some(Mention {
            start: i,
            end,
            day: None,
            time: Some(t),
        });
    }
    let meridiem = tok(toks, i + 1).and_then(meridiem_of)?;
    let t = clock(hour, 0, Some(&meridiem))?;
    Some(Mention {
        start: i,
        end: i + 2,
        day: None,
        time: Some(t),
    })
}

/// What a value names when it is wholly a date, a time, or a date and a time (weekday names,
/// `at`, `on`, `the`, commas and zone names may surround them).
pub fn of_value(toks: Toks<'_>, order: DateOrder) -> Option<Named> {
    // Every form has a token that starts with a digit.
    if !toks
        .iter()
        .any(|(t, _)| t.as_bytes().first().is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    let mentions = scan(toks, order);
    let mut covered = vec![false; toks.len()];
    let (mut day, mut time) = (None, None);
    for m in &mentions {
        if m.day.is_some() {
            if day.is_some() {
                return None;
            }
            day = m.day;
        } else if m.time.is_none() {
            return None; // an ambiguous numeric date
        }
        if m.time.is_some() {
            if time.is_some() {
                return None;
            }
            time = m.time;
        }
        for c in covered.get_mut(m.start..m.end).unwrap_or_default() {
            *c = true;
        }
    }
    let filler = |t: &str| {
        matches!(
            t,
            "," | "at"
                | "on"
                | "the"
                | "utc"
                | "gmt"
                | "z"
                | "monday"
                | "mon"
                | "tuesday"
                | "tue"
                | "wednesday"
                | "wed"
                | "thursday"
                | "thu"
                | "friday"
                | "fri"
                | "saturday"
                | "sat"
                | "sunday"
                | "sun"
        )
    };
    let rest_is_filler = toks.iter().zip(&covered).all(|((t, _), c)| *c || filler(t));
    (rest_is_filler && (day.is_some() || time.is_some())).then_some((day, time))
}

#[cfg(test)]
mod tests {
    use super::super::tokens::glued_tokens;
    use super::*;

    fn one(text: &str, order: DateOrder) -> Option<Named> {
        of_value(&glued_tokens(text), order)
    }

    fn ymd(y: u16, m: u8, d: u8) -> Option<Day> {
        Some(Day {
            year: Some(y),
            month: m,
            day: d,
        })
    }

    fn md(m: u8, d: u8) -> Option<Day> {
        Some(Day {
            year: None,
            month: m,
            day: d,
        })
    }

    #[test]
    fn written_forms_name_their_day() {
        let u = DateOrder::Unknown;
        for (text, want) in [
            ("2024-05-19", ymd(2024, 5, 19)),
            ("2024/05/19", ymd(2024, 5, 19)),
            ("19.05.2024", ymd(2024, 5, 19)),
            ("05/19/2024", ymd(2024, 5, 19)),
            ("19/05/24", ymd(2024, 5, 19)),
            ("May 19th", md(5, 19)),
            ("may 19", md(5, 19)),
            ("Sunday, May 19, 2024", ymd(2024, 5, 19)),
            ("19 May 2024", ymd(2024, 5, 19)),
            ("the 19th of May", md(5, 19)),
            ("Feb 29", md(2, 29)),
        ] {
            assert_eq!(one(text, u).map(|v| v.0), Some(want), "{text}");
        }
        for not_a_day in [
            "2023-02-29",
            "May 32",
            "13/13/2024",
            "2024-13-01",
            "May",
            "19",
            "v1.2.3",
        ] {
            assert_eq!(one(not_a_day, u).and_then(|v| v.0), None, "{not_a_day}");
        }
    }

    #[test]
    fn an_ambiguous_numeric_date_follows_the_locale() {
        assert_eq!(one("05/06/2024", DateOrder::Unknown), None);
        assert_eq!(
            one("05/06/2024", DateOrder::MonthFirst).map(|v| v.0),
            Some(ymd(2024, 5, 6))
        );
        assert_eq!(
            one("05/06/2024", DateOrder::DayFirst).map(|v| v.0),
            Some(ymd(2024, 6, 5))
        );
        assert_eq!(DateOrder::of_locale("en-US"), DateOrder::MonthFirst);
        assert_eq!(DateOrder::of_locale("de_DE"), DateOrder::DayFirst);
        assert_eq!(DateOrder::of_locale("en-GB"), DateOrder::DayFirst);
        assert_eq!(DateOrder::of_locale("en"), DateOrder::Unknown);
        assert_eq!(DateOrder::of_locale("ja-JP"), DateOrder::Unknown);
    }

    #[test]
    fn times_on_the_24_hour_clock() {
        let u = DateOrder::Unknown;
        for (text, want) in [
            ("10:30", (10, 30)),
            ("10:30:00", (10, 30)),
            ("10:30pm", (22, 30)),
            ("10:30 PM", (22, 30)),
            ("3pm", (15, 0)),
            ("3 pm", (15, 0)),
            ("12am", (0, 0)),
            ("12pm", (12, 0)),
            ("15:00", (15, 0)),
        ] {
            assert_eq!(one(text, u), Some((None, Some(want))), "{text}");
        }
        assert_eq!(one("25:00", u), None);
        assert_eq!(one("13pm", u), None);
        assert_eq!(
            one("2024-05-19T10:30:00Z", u),
            Some((ymd(2024, 5, 19), Some((10, 30))))
        );
        assert_eq!(
            one("2024-05-19T10:30:00.000+02:00", u),
            Some((ymd(2024, 5, 19), Some((10, 30))))
        );
        assert_eq!(
            one("2024-05-19T00:00:00Z", u),
            Some((ymd(2024, 5, 19), None))
        );
        assert_eq!(one("May 19 at 3pm", u), Some((md(5, 19), Some((15, 0)))));
    }

    #[test]
    fn mentions_in_text_carry_their_spans() {
        let toks = glued_tokens("Meet on June 13 at 10:30, room 13.");
        let m = scan(&toks, DateOrder::Unknown);
        assert_eq!(m.len(), 2);
        assert_eq!(m.first().and_then(|m| m.day), md(6, 13));
        assert_eq!(m.get(1).and_then(|m| m.time), Some((10, 30)));
    }
}
