//! Named source texts and the locations errors point at.

use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Bytes of a long line shown on each side of what an error points at: a 2 MB string literal on
/// one line must not print 2 MB.
const WINDOW: usize = 160;

/// A text the deployment is built from, with the name errors should cite (usually its path).
///
/// The text is shared: every location in it holds the same allocation, so a file of 100,000
/// policies is held once, not once per policy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// The file name or other label shown in errors.
    pub name: String,
    /// The full text.
    pub text: Arc<str>,
    /// Byte offset of each line's start, and whether the line is ASCII; computed on first use.
    #[serde(skip)]
    lines: OnceLock<Vec<(usize, bool)>>,
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.text == other.text
    }
}

impl Eq for Source {}

impl Source {
    /// A source named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: Arc::from(text.into()),
            lines: OnceLock::new(),
        }
    }

    /// The location of byte `offset` (clamped to the text), carrying the text for rendering: the
    /// whole text, or on a line longer than a few hundred bytes a window around the location.
    pub fn locate(&self, offset: usize, len: usize) -> Located {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let (line, column) = self.line_column(offset);
        let len = len.min(self.text.len() - offset);
        let line_start = self
            .text
            .get(..offset)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line_end = self
            .text
            .get(offset..)
            .and_then(|t| t.find('\n'))
            .map_or(self.text.len(), |i| offset + i);
        let snippet = if line_end - line_start <= 2 * WINDOW {
            Snippet {
                name: self.name.clone(),
                text: Arc::clone(&self.text),
                window: 0..self.text.len(),
                line: 0,
                column: 0,
            }
        } else {
            let start =
                floor_char_boundary(&self.text, offset.saturating_sub(WINDOW).max(line_start));
            let end = floor_char_boundary(
                &self.text,
                offset
                    .saturating_add(len.min(WINDOW))
                    .saturating_add(WINDOW)
                    .min(line_end),
            );
            Snippet {
                name: self.name.clone(),
                text: Arc::clone(&self.text),
                window: start..end,
                line: line - 1,
                column: self
                    .text
                    .get(line_start..start)
                    .map_or(0, |t| t.chars().count()),
            }
        };
        let span_start = offset - snippet.window.start;
        let span_len = len.min(snippet.window.end - offset);
        Located {
            file: self.name.clone(),
            line,
            column,
            snippet: Some(Box::new((
                snippet,
                SourceSpan::new(span_start.into(), span_len),
            ))),
        }
    }

    /// 1-based line and column (in characters) of byte `offset`, by binary search over the
    /// line starts (a column costs nothing on an ASCII line, however long).
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let lines = self.lines.get_or_init(|| {
            let mut lines = Vec::new();
            let mut start = 0;
            for line in self.text.split_inclusive('\n') {
                lines.push((start, line.is_ascii()));
                start += line.len();
            }
            lines
        });
        let line = lines.partition_point(|&(s, _)| s <= offset).max(1);
        let (start, ascii) = lines.get(line - 1).copied().unwrap_or((0, true));
        let column = if ascii {
            offset - start.min(offset)
        } else {
            self.text
                .get(start..offset)
                .map_or(0, |t| t.chars().count())
        };
        (line, column + 1)
    }

    /// A location naming a 1-based line and column, as reported by serde_json or toml.
    pub fn at_line(&self, line: usize, column: usize) -> Located {
        let offset = offset_of(&self.text, line, column);
        let mut at = self.locate(offset, 0);
        at.line = line.max(1);
        at.column = column.max(1);
        at
    }

    /// A location naming the file alone, for problems without a position (a missing field...).
    pub fn whole(&self) -> Located {
        Located::file(self.name.clone())
    }
}

/// Where a problem is: file, 1-based line and column, and (when known) the text to underline.
#[derive(Debug, Clone)]
pub struct Located {
    /// The source's name.
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    pub(crate) snippet: Option<Box<(Snippet, SourceSpan)>>,
}

/// The text an error underlines: `window` of `text`, which starts at 0-based `line` and `column`
/// of the whole text (a window of a long line keeps the line's true number).
#[derive(Debug, Clone)]
pub(crate) struct Snippet {
    name: String,
    text: Arc<str>,
    window: std::ops::Range<usize>,
    line: usize,
    column: usize,
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let data: &'a str = self.text.get(self.window.clone()).unwrap_or_default();
        let inner = data.read_span(span, context_lines_before, context_lines_after)?;
        let column = if inner.line() == 0 {
            inner.column() + self.column
        } else {
            inner.column()
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.line,
            column,
            inner.line_count(),
        )))
    }
}

impl Located {
    /// A location naming only a file (or another label such as `<tool registry>`).
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
            snippet: None,
        }
    }
}

impl Located {
    /// The text around the location, for a [`miette::Diagnostic`]'s `source_code`.
    pub fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.snippet
            .as_ref()
            .map(|b| &b.0 as &dyn miette::SourceCode)
    }

    /// The span to underline, for a [`miette::Diagnostic`]'s `labels`.
    pub fn label(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.snippet.as_ref()?.1;
        let label = miette::LabeledSpan::new_with_span(Some("here".into()), span);
        Some(Box::new(std::iter::once(label)))
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{l}", self.file),
            (l, c) => write!(f, "{}:{l}:{c}", self.file),
        }
    }
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + col_bytes;
        }
        offset += l.len();
    }
    text.len()
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns_and_back() {
        let src = Source::new("a.cedar", "one\ntwo\nthrée x\n");
        let at = src.locate(14, 1);
        assert_eq!((at.line, at.column), (3, 6));
        assert_eq!(at.to_string(), "a.cedar:3:6");
        let back = src.at_line(3, 6);
        assert_eq!(back.snippet.map(|b| b.1.offset()), Some(14));
        assert_eq!(src.whole().to_string(), "a.cedar");
    }

    #[test]
    fn every_location_shares_the_text_and_finds_its_line_on_any_line() {
        let src = Source::new("e.json", "[\n  {\"a\": 1},\n  {\"é\": 2}, {\"b\": 3}\n]");
        let starts = [
            (0, (1, 1)),
            (1, (1, 2)),
            (2, (2, 1)),
            (4, (2, 3)),
            (16, (3, 3)),
            (27, (3, 13)),
        ];
        for (offset, want) in starts {
            let at = src.locate(offset, 1);
            assert_eq!((at.line, at.column), want, "offset {offset}");
            let shared = at.snippet.as_ref().map(|b| &b.0.text);
            assert!(
                shared.is_some_and(|t| Arc::ptr_eq(t, &src.text)),
                "offset {offset}"
            );
        }
        // Past the end clamps to the last position.
        assert_eq!(src.locate(10_000, 1).line, 4);
    }
}
